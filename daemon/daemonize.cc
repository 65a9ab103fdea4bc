// Daemonizing (daemon/daemonize.h).
#include "daemon/daemonize.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "daemon/daemon.h"

namespace scribefs {
namespace {

int PrintError(int code, const std::string& msg) {
  fprintf(stderr, "scribefs: %s\n", msg.c_str());
  return code;
}

}  // namespace

bool StderrIsJournal() {
  const char* env = getenv("JOURNAL_STREAM");
  unsigned long long dev = 0, ino = 0;
  if (!env || sscanf(env, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st;
  return fstat(STDERR_FILENO, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

int RunInBackground(const Config& cfg, const std::string& mounted_line,
                    const std::function<int(const ReadyFn&)>& child) {
  // Background: the child does all the work and tells the parent, through a
  // pipe, whether the mount came up; the parent reports and exits with the
  // right code. Threads start only in the child.
  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) != 0)
    return PrintError(kExitFailure, "pipe: " + std::string(strerror(errno)));
  pid_t pid = fork();
  if (pid < 0) return PrintError(kExitFailure, "fork: " + std::string(strerror(errno)));
  if (pid > 0) {
    close(pfd[1]);
    std::string msg;
    char buf[512];
    ssize_t n;
    while ((n = read(pfd[0], buf, sizeof buf)) > 0) msg.append(buf, n);
    close(pfd[0]);
    if (msg.empty())
      return PrintError(kExitFailure, "the daemon died during start-up (see the log in " +
                                          cfg.state_dir + "/scribefs.log)");
    int code = msg[0] - '0';
    if (code == 0) {
      printf("%s\n", mounted_line.c_str());
      return kExitOk;
    }
    return PrintError(code, msg.substr(2));
  }
  close(pfd[0]);
  setsid();
  if (chdir("/") != 0) _exit(kExitFailure);
  int report_fd = pfd[1];
  const bool keep_stderr = StderrIsJournal();
  auto report = [&](const StartError* e) {
    std::string msg = e ? std::to_string(e->exit_code) + " " + e->message : "0";
    if (report_fd >= 0) {
      (void)!write(report_fd, msg.data(), msg.size());
      close(report_fd);
      report_fd = -1;
    }
    if (e) spdlog::error("{}", e->message);
    // Detach from the terminal once start-up is over.
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
      dup2(null, 0);
      dup2(null, 1);
      if (!keep_stderr) dup2(null, 2);
      close(null);
    }
  };
  _exit(child(report));
}

}  // namespace scribefs
