// ns_journal.cc - the journal's share of namespace operations, without FUSE:
// N group commits of (the deferred close of the previous file + a create), as
// the daemon issues them for create + write + close, then N commits of one
// unlink. Built and run under callgrind by bench/ns_journal.sh, which gives
// instruction counts that do not depend on the load of a shared machine.
// usage: ns_journal JOURNAL_PATH N
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "journal/journal.h"
using namespace scribefs;
int main(int argc, char** argv) {
  std::string path = argv[1];
  int n = atoi(argv[2]);
  auto j = Journal::Open(path);
  if (!j.ok()) {
    fprintf(stderr, "%s\n", j.status().ToString().c_str());
    return 1;
  }
  auto name = [](int i) {
    char b[64];
    snprintf(b, sizeof b, "t/d%03d/f%06d", i / 500, i);
    return std::string(b);
  };
  for (int i = 0; i < n; ++i) {
    std::vector<Record> rs;
    if (i) {
      Record c;
      c.op = Op::kClose;
      c.path = name(i - 1);
      c.size = 4096;
      c.mode = 0100644;
      c.detail = "{\"mtime_ns\":1796515696808894686}";
      rs.push_back(c);
    }
    Record r;
    r.op = Op::kCreate;
    r.path = name(i);
    r.size = 0;
    r.mode = 0100644;
    r.flags = 33345;
    rs.push_back(r);
    if (!(*j)->Commit(rs, false, 1).ok()) return 1;
    (*j)->EndApply(rs.back().seq);
  }
  for (int i = 0; i < n; ++i) {
    Record r;
    r.op = Op::kUnlink;
    r.path = name(i);
    r.mode = 0100644;
    if (!(*j)->Commit({&r, 1}, false, 1).ok()) return 1;
    (*j)->EndApply(r.seq);
  }
  return 0;
}
