#include "uploader/reconciler.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/beneath.h"
#include "uploader/remote_index.h"

namespace scribefs {
namespace {

int64_t MtimeNs(const struct stat& st) {
  return int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

const char* TypeOf(mode_t m) {
  if (S_ISREG(m)) return "file";
  if (S_ISDIR(m)) return "dir";
  if (S_ISLNK(m)) return "symlink";
  return "special";
}

}  // namespace

Result<ReconcileReport> ReconcileTree(Journal* journal, int root_fd,
                                      const std::function<bool(const std::string&)>& excluded) {
  auto t0 = std::chrono::steady_clock::now();
  ReconcileReport rep;
  auto index = RemoteIndex::Open(journal->path());
  if (!index.ok()) return index.status();
  auto rows = index.value()->All();
  if (!rows.ok()) return rows.status();
  std::unordered_map<std::string, RemoteObject> known;
  known.reserve(rows->size());
  for (auto& r : *rows) known.emplace(r.path, std::move(r));

  std::vector<Record> batch;
  auto flush = [&]() -> Status {
    if (batch.empty()) return Status::Ok();
    Status s = journal->Commit(batch);
    batch.clear();
    return s;
  };
  auto report = [&](const std::string& path, const char* reason, const struct stat* st) -> Status {
    Record r;
    r.op = Op::kReconcile;
    r.path = path;
    if (st) {
      r.mode = st->st_mode;
      if (S_ISREG(st->st_mode)) r.size = st->st_size;
    }
    r.detail = nlohmann::json{{"reason", reason}}.dump();
    batch.push_back(std::move(r));
    return batch.size() >= 2000 ? flush() : Status::Ok();
  };

  // Depth-first over directory descriptors (never following symlinks).
  struct Dir {
    std::string path;
    UniqueFd fd;
  };
  std::vector<Dir> stack;
  {
    auto root = OpenBeneath(root_fd, "", O_RDONLY | O_DIRECTORY);
    if (!root.ok()) return root.status();
    stack.push_back({"", std::move(root.value())});
  }
  while (!stack.empty()) {
    Dir dir = std::move(stack.back());
    stack.pop_back();
    int dfd = fcntl(dir.fd.get(), F_DUPFD_CLOEXEC, 3);
    if (dfd < 0) return PosixError("reconcile " + dir.path, errno);
    DIR* d = fdopendir(dfd);
    if (!d) {
      close(dfd);
      return PosixError("reconcile " + dir.path, errno);
    }
    while (struct dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      std::string path = dir.path.empty() ? name : dir.path + "/" + name;
      if (excluded(path)) continue;
      struct stat st;
      if (fstatat(dir.fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // raced
      rep.scanned++;
      auto it = known.find(path);
      if (it == known.end()) {
        rep.new_paths++;
        SCRIBEFS_RETURN_IF_ERROR(report(path, "new", &st));
      } else {
        const RemoteObject& o = it->second;
        bool same = o.type == TypeOf(st.st_mode) && o.mode == st.st_mode && o.uid == st.st_uid &&
                    o.gid == st.st_gid &&
                    (S_ISDIR(st.st_mode) ||
                     (o.size == uint64_t(st.st_size) && o.mtime_ns == MtimeNs(st)));
        if (!same) {
          rep.changed++;
          SCRIBEFS_RETURN_IF_ERROR(report(path, "changed", &st));
        }
        known.erase(it);
      }
      if (S_ISDIR(st.st_mode)) {
        int cfd = openat(dir.fd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (cfd >= 0) stack.push_back({path, UniqueFd(cfd)});
      }
    }
    closedir(d);
  }
  // What the target holds but DATADIR no longer has (keys below a vanished
  // directory are removed with it; report only the topmost).
  for (const auto& [path, o] : known) {
    auto slash = path.rfind('/');
    bool parent_missing = false;
    for (auto p = slash; p != std::string::npos && p > 0; p = path.rfind('/', p - 1)) {
      if (known.count(path.substr(0, p))) {
        parent_missing = true;
        break;
      }
      if (p == 0) break;
    }
    if (parent_missing || excluded(path)) continue;
    rep.missing++;
    SCRIBEFS_RETURN_IF_ERROR(report(path, "missing", nullptr));
  }
  SCRIBEFS_RETURN_IF_ERROR(flush());
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

}  // namespace scribefs
