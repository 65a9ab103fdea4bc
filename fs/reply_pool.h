// ReplyPool: threads that finish FUSE requests off the FUSE worker threads.
//
// In sync mode a mutating operation replies only once its record is stored
// in the target; while the target is down that takes up to --sync-timeout.
// If every such wait sat on a FUSE worker, a few writers would take all of
// them and reads, stats and lookups would starve. The adapter lets at most
// max_threads - 2 workers wait; beyond that the wait and the reply (libfuse
// lets a request be answered from any thread) are posted here. Tasks run in
// the order posted on `threads` threads; each task's deadline was fixed when
// it was posted, so a queue of waits still ends within one timeout.
//
// Thread-safe. The destructor runs every task already posted.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace scribefs {

class ReplyPool {
 public:
  explicit ReplyPool(int threads);
  ~ReplyPool();
  ReplyPool(const ReplyPool&) = delete;
  ReplyPool& operator=(const ReplyPool&) = delete;

  void Post(std::function<void()> task);

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;  // GUARDED_BY(mu_)
  bool stopping_ = false;                    // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;
};

}  // namespace scribefs
