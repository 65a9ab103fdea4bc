#include "common/thread_priority.h"

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace scribefs {

void SetThisThreadNice(int nice) {
  if (nice <= 0) return;
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), nice) == 0) return;
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true))
    fprintf(stderr, "scribefs: setpriority(%d) of a background thread: %s\n", nice,
            strerror(errno));
}

}  // namespace scribefs
