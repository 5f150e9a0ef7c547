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
    while (pending_.load(std::memory_order_acquire) != 0) {
      if (++spins < (1 << 12)) {
        HANAMI_PAUSE();
      } else {
        congested_ = true;          // a worker lost its core: the machine is busy
        std::this_thread::yield();  // and do not burn this one either
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

// Decides, window by window, whether the team or the calling thread alone runs faster. On a
// busy machine a worker that lost its core makes every phase wait for the scheduler, and working
// alone is then much faster; results are the same either way, only the speed differs.
class TeamChooser {
 public:
  explicit TeamChooser(Team* team) : team_(team) {}

  // The team to use for the sample about to start (nullptr: work alone).
  Team* before_sample(int64_t sample) {
    if (team_ == nullptr) return nullptr;
    if (team_->congested()) {  // another program has the other core: work alone for a long while
      team_->clear_congested();
      phase_ = kSolo;
      window_start_ = std::chrono::steady_clock::now();
      window_end_ = sample + kCongestedPause;
    }
    if (sample >= window_end_) switch_window(sample);
    return phase_ == kSolo || phase_ == kProbeSolo ? nullptr : team_;
  }

 private:
  enum Phase { kProbeTeam, kProbeSolo, kTeam, kSolo };
  static constexpr int64_t kProbe = 128;            // samples timed per probe
  static constexpr int64_t kSettled = 8192;         // samples run with the winner before probing again
  static constexpr int64_t kCongestedPause = 32768; // samples run alone after a worker lost its core

  void switch_window(int64_t sample) {
    const auto now = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(now - window_start_).count();
    switch (phase_) {
      case kProbeTeam:
        team_seconds_ = seconds;
        phase_ = kProbeSolo;
        break;
      case kProbeSolo:
        phase_ = seconds < team_seconds_ ? kSolo : kTeam;
        break;
      default:
        phase_ = kProbeTeam;
        break;
    }
    if (!started_) {  // the first window has no timing to judge yet
      started_ = true;
      phase_ = kProbeTeam;
    }
    window_start_ = now;
    window_end_ = sample + (phase_ == kProbeTeam || phase_ == kProbeSolo ? kProbe : kSettled);
  }

  Team* team_;
  Phase phase_ = kProbeTeam;
  bool started_ = false;
  int64_t window_end_ = 0;
  double team_seconds_ = 0.0;
  std::chrono::steady_clock::time_point window_start_ = std::chrono::steady_clock::now();
};

}  // namespace hanami
