// A small team of threads that stays alive for one op call and runs one job per phase.
//
// Online learning is sequential over samples, so parallel work exists only inside a sample and
// lasts a few microseconds; waking threads through the OS for each phase would cost more than the
// work. Workers therefore spin (with a pause hint) between phases, and the calling thread works as
// member 0. A team is only made for calls long enough to be worth the spinning.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define HANAMI_PAUSE() _mm_pause()
#else
#define HANAMI_PAUSE() std::this_thread::yield()
#endif

namespace hanami {

class Team {
 public:
  explicit Team(int size) : size_(size) {
    for (int member = 1; member < size_; ++member)
      workers_.emplace_back([this, member] { work(member); });
  }
  ~Team() {
    stop_.store(true, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_acq_rel);
    for (auto& worker : workers_) worker.join();
  }
  Team(const Team&) = delete;
  Team& operator=(const Team&) = delete;

  int size() const { return size_; }

  // Runs job(member) on every member, the caller being member 0; returns when all are done.
  void run(const std::function<void(int)>& job) {
    job_ = &job;
    pending_.store(size_ - 1, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_acq_rel);
    job(0);
    int spins = 0;
    std::chrono::steady_clock::time_point waiting_since;
    while (pending_.load(std::memory_order_acquire) != 0) {
      if (spins == 0) waiting_since = std::chrono::steady_clock::now();
      if (++spins % 256 != 0) {
        HANAMI_PAUSE();
        continue;
      }
      // A phase lasts microseconds; a worker still busy after 200 us has lost its core to
      // another program: remember that, and stop burning this core too.
      if (std::chrono::steady_clock::now() - waiting_since > std::chrono::microseconds(200)) {
        congested_ = true;
        std::this_thread::yield();
      }
    }
  }

  // True once a phase had to wait for a descheduled worker (cleared by the caller).
  bool congested() const { return congested_; }
  void clear_congested() { congested_ = false; }

 private:
  void work(int member) {
    uint64_t seen = 0;
    for (;;) {
      uint64_t now;
      int spins = 0;
      while ((now = generation_.load(std::memory_order_acquire)) == seen) {
        if (++spins < (1 << 14)) {
          HANAMI_PAUSE();
        } else {
          std::this_thread::yield();  // a long serial stretch: let the core go
        }
      }
      seen = now;
      if (stop_.load(std::memory_order_acquire)) return;
      (*job_)(member);
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  int size_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  bool congested_ = false;
};

// Uses the team unless the machine is busy. On a busy machine a worker that lost its core makes
// every phase wait for the scheduler, and working alone is then much faster; after a long stretch
// alone the team gets another chance. Results are the same either way, only the speed differs.
class TeamChooser {
 public:
  explicit TeamChooser(Team* team) : team_(team) {}

  // The team to use for the sample about to start (nullptr: work alone).
  Team* before_sample(int64_t sample) {
    if (team_ == nullptr) return nullptr;
    if (team_->congested()) {  // the OS took the worker's core away during the last sample
      team_->clear_congested();
      if (sample - window_start_ > kWindow) {
        window_start_ = sample;
        stalls_ = 0;
      }
      // a single stall is an interrupt; several in a row mean another program wants the core
      if (++stalls_ >= kStallsForBusy) alone_until_ = sample + kAlone;
    }
    return sample < alone_until_ ? nullptr : team_;
  }

 private:
  static constexpr int64_t kWindow = 1024;   // samples over which stalls are counted
  static constexpr int kStallsForBusy = 4;   // stalls within a window that mean "busy machine"
  static constexpr int64_t kAlone = 8192;    // samples run alone on a busy machine

  Team* team_;
  int64_t alone_until_ = 0;
  int64_t window_start_ = 0;
  int stalls_ = 0;
};

}  // namespace hanami
