#include "fs/reply_pool.h"

#include <spdlog/spdlog.h>

#include <exception>

namespace scribefs {

ReplyPool::ReplyPool(int threads) {
  for (int i = 0; i < (threads < 1 ? 1 : threads); ++i) threads_.emplace_back([this] { Loop(); });
}

ReplyPool::~ReplyPool() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void ReplyPool::Post(std::function<void()> task) {
  {
    std::lock_guard lk(mu_);
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void ReplyPool::Loop() {
  std::unique_lock lk(mu_);
  while (true) {
    cv_.wait(lk, [&] { return stopping_ || !tasks_.empty(); });
    if (tasks_.empty()) return;  // stopping, nothing left
    std::function<void()> task = std::move(tasks_.front());
    tasks_.pop_front();
    lk.unlock();
    try {
      task();
    } catch (const std::exception& e) {
      // Tasks reply to their own request; this is a bug in one.
      spdlog::error("deferred reply failed: {}", e.what());
    }
    task = nullptr;  // destroy captures without the lock
    lk.lock();
  }
}

}  // namespace scribefs
