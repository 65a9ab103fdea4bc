// storm_writer: one process of the event storm test. Creates COUNT small
// files below DIR/pID/ as fast as it can, 200 to a directory, with a rename
// (within its tree, sometimes into another directory) after every 10th
// create and a delete after every 7th, so that the journal sees create,
// write, close, rename and unlink interleaved with the other process's.
//
//   storm_writer DIR ID COUNT
//
// Prints one JSON line: {"created":N,"renamed":N,"deleted":N,"seconds":S}.
// Exit 1 (with the failing path on stderr) when any operation fails.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

int Fail(const std::string& what) {
  fprintf(stderr, "storm_writer: %s: %s\n", what.c_str(), strerror(errno));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: storm_writer DIR ID COUNT\n");
    return 2;
  }
  const std::string root = std::string(argv[1]) + "/p" + argv[2];
  const long count = std::stol(argv[3]);
  auto t0 = std::chrono::steady_clock::now();
  if (mkdir(root.c_str(), 0755) != 0) return Fail("mkdir " + root);
  std::vector<std::string> live;  // files that exist, for renames and deletes
  long created = 0, renamed = 0, deleted = 0;
  char buf[2048];
  for (long i = 0; i < count; ++i) {
    std::string dir = root + "/d" + std::to_string(i / 200);
    if (i % 200 == 0 && mkdir(dir.c_str(), 0755) != 0) return Fail("mkdir " + dir);
    std::string path = dir + "/f" + std::to_string(i);
    int fd = open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) return Fail("create " + path);
    size_t n = static_cast<size_t>((i * 7919) % sizeof buf);
    for (size_t k = 0; k < n; ++k) buf[k] = static_cast<char>('a' + (i + k) % 26);
    if (write(fd, buf, n) != static_cast<ssize_t>(n)) return Fail("write " + path);
    if (close(fd) != 0) return Fail("close " + path);
    ++created;
    live.push_back(path);
    if (i % 10 == 9) {
      // Rename an earlier file, every other time into the current directory.
      size_t k = static_cast<size_t>(i * 31) % live.size();
      std::string to = (i % 20 == 19 ? dir : live[k].substr(0, live[k].rfind('/'))) + "/r" +
                       std::to_string(i);
      if (rename(live[k].c_str(), to.c_str()) != 0) return Fail("rename " + live[k]);
      live[k] = to;
      ++renamed;
    }
    if (i % 7 == 6) {
      size_t k = static_cast<size_t>(i * 17) % live.size();
      if (unlink(live[k].c_str()) != 0) return Fail("unlink " + live[k]);
      live[k] = live.back();
      live.pop_back();
      ++deleted;
    }
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  printf("{\"created\":%ld,\"renamed\":%ld,\"deleted\":%ld,\"seconds\":%.3f}\n", created, renamed,
         deleted, s);
  return 0;
}
