// CPU engine of the Hanami cycle (spec §4, §5, Appendix A), one sample at a time.
//
// Order of work, which fixes every float summation order (the Python reference follows it):
// bricks in template order; inside a brick, its neuron blocks in order; inside a block, its
// sections in "processing order" (ascending section id n*8+p, or in compat mode ascending
// connection slot, like Hanami's connection blocks); inside a section, slots in order.
#include "engine.h"

#include "simd.h"
#include "team.h"

#include <algorithm>
#include <cstring>
#include <memory>

namespace hanami {
namespace {

constexpr int kGrowSlack = 7;       // spare slots reserved when a section outgrows its reserve
constexpr int kCompactSlack = 2;    // spare slots per section after a compaction during learning

inline int first_free_slot(uint8_t mask) {
  for (int p = 0; p < kSectionsPerNeuron; ++p)
    if (!(mask & (1u << p))) return p;
  return -1;
}

inline int reserve_for(int len, int slack) {
  return std::min(kSynapsesPerSection, len + slack);
}

}  // namespace

Engine::Engine(const ClusterView& view, const Config& config) : v_(view), cfg_(config) {
  const int64_t n_sections = int64_t(v_.n_neurons) * kSectionsPerNeuron;
  neuron_brick_.assign(v_.n_neurons, 0);
  for (int b = 0; b < v_.n_bricks; ++b)
    for (int i = 0; i < v_.brick_count(b); ++i) neuron_brick_[v_.brick_start(b) + i] = b;

  in_use_.assign(v_.n_neurons, 0);
  block_sections_.assign(v_.n_blocks, {});
  for (int64_t s = 0; s < n_sections; ++s) {
    const int32_t g = v_.sec_block[s];
    if (g == kNoSection) continue;
    in_use_[s / kSectionsPerNeuron] |= uint8_t(1u << (s % kSectionsPerNeuron));
    if (g == kPendingSection)
      pending_sections_.push_back(int32_t(s));
    else
      block_sections_[g].push_back(int32_t(s));
  }
  if (cfg_.compat) {
    for (auto& list : block_sections_)
      std::sort(list.begin(), list.end(),
                [&](int32_t a, int32_t b) { return v_.sec_conn[a] < v_.sec_conn[b]; });
    connection_use_.assign(v_.n_bricks, {});
    for (int b = 0; b < v_.n_bricks; ++b) rebuild_grid(b);
    for (int32_t n = 0; n < v_.n_neurons; ++n)
      if (v_.request[n] >= 0.0f) request_candidates_.push_back(n);
  }
  block_input_.assign(size_t(v_.n_blocks) * kNeuronsPerBlock, 0.0f);
  active_hidden_.assign(v_.n_bricks, {});
  block_delta_.assign(size_t(v_.n_blocks) * kDeltaStride, 0.0f);
  if (v_.syn_counter) {  // potential > 0 of every neuron, as of the last update of its brick
    block_positive_.assign(size_t(v_.n_blocks) * kDeltaStride, 0);
    for (int b = 0; b < v_.n_bricks; ++b)
      for (int i = 0; i < v_.brick_count(b); ++i)
        *positive_of(v_.brick_first_block(b), i) = v_.potential[v_.brick_start(b) + i] > 0.0f;
  }
  slot_value_.assign(n_sections, 0.0f);
  if (v_.syn_pending) batch_marked_.assign(n_sections, 0);
  lanes_.resize(std::max(1, cfg_.threads));
  for (Lane& lane : lanes_) lane.visits.assign(v_.n_bricks, {});
}

// ---- arena -------------------------------------------------------------------------------------

int64_t Engine::allocate(int n_slots) {
  const int64_t top = v_.counters[kArenaTop];
  if (top + n_slots > v_.capacity) return -1;
  v_.counters[kArenaTop] = top + n_slots;
  return top;
}

// Keeps the invariant "reserve >= len + 1" that lets a walk add its one slot without allocating.
// The gradient rule reserves all 63 slots at once: a synapse never moves, so optimizer state kept
// per arena slot stays valid.
void Engine::ensure_reserve(int32_t s) {
  const int len = v_.sec_len[s];
  const int cap = v_.sec_cap[s];
  if (cap >= reserve_for(len, 1)) return;
  const int new_cap = cfg_.gradient_rule ? kSynapsesPerSection : reserve_for(len, 1 + kGrowSlack);
  const int64_t start = allocate(new_cap);
  if (start < 0) {  // the next sample boundary compacts or asks Python for a larger arena
    v_.counters[kNeedy] += 1;
    return;
  }
  const int64_t old = v_.sec_start[s];
  if (len > 0) {
    std::memcpy(v_.syn_weight + start, v_.syn_weight + old, len * sizeof(float));
    std::memcpy(v_.syn_upper + start, v_.syn_upper + old, len * sizeof(float));
    std::memcpy(v_.syn_target + start, v_.syn_target + old, len);
    if (v_.syn_counter) std::memcpy(v_.syn_counter + start, v_.syn_counter + old, len);
    if (v_.syn_accum) std::memcpy(v_.syn_accum + start, v_.syn_accum + old, len * sizeof(float));
    if (v_.syn_pending)
      std::memcpy(v_.syn_pending + start, v_.syn_pending + old, len * sizeof(float));
  }
  v_.counters[kGarbage] += cap;
  v_.sec_start[s] = int32_t(start);
  v_.sec_cap[s] = uint8_t(new_cap);
}

// Gradient rule, instead of a compaction: the sections still without their reserve get it, in
// processing order. Returns false when the arena is full (Python grows it, keeping every slot).
bool Engine::reserve_waiting() {
  v_.counters[kNeedy] = 0;
  for (int g = 0; g < v_.n_blocks; ++g)
    for (int32_t s : block_sections_[g]) ensure_reserve(s);
  return v_.counters[kNeedy] == 0;
}

bool Engine::compact(int slack) {
  std::vector<int32_t> order;
  for (int b = 0; b < v_.n_bricks; ++b)
    for (int g = v_.brick_first_block(b); g < v_.brick_first_block(b) + v_.brick_blocks(b); ++g)
      for (int32_t s : block_sections_[g]) order.push_back(s);
  int64_t total = 0;
  for (int32_t s : order) total += reserve_for(v_.sec_len[s], slack);
  if (total > v_.capacity) return false;

  std::vector<float> weight(total), upper(total);
  std::vector<uint8_t> target(total, kEmptyTarget), counter(v_.syn_counter ? total : 0, 0);
  std::vector<float> accum(v_.syn_accum ? total : 0, 0.0f);
  std::vector<float> pending(v_.syn_pending ? total : 0, 0.0f);
  int64_t top = 0;
  for (int32_t s : order) {
    const int len = v_.sec_len[s];
    const int64_t old = v_.sec_start[s];
    std::copy_n(v_.syn_weight + old, len, weight.begin() + top);
    std::copy_n(v_.syn_upper + old, len, upper.begin() + top);
    std::copy_n(v_.syn_target + old, len, target.begin() + top);
    if (v_.syn_counter) std::copy_n(v_.syn_counter + old, len, counter.begin() + top);
    if (v_.syn_accum) std::copy_n(v_.syn_accum + old, len, accum.begin() + top);
    if (v_.syn_pending) std::copy_n(v_.syn_pending + old, len, pending.begin() + top);
    v_.sec_start[s] = int32_t(top);
    v_.sec_cap[s] = uint8_t(reserve_for(len, slack));
    top += v_.sec_cap[s];
  }
  std::copy(weight.begin(), weight.end(), v_.syn_weight);
  std::copy(upper.begin(), upper.end(), v_.syn_upper);
  std::copy(target.begin(), target.end(), v_.syn_target);
  if (v_.syn_counter) std::copy(counter.begin(), counter.end(), v_.syn_counter);
  if (v_.syn_accum) std::copy(accum.begin(), accum.end(), v_.syn_accum);
  if (v_.syn_pending) std::copy(pending.begin(), pending.end(), v_.syn_pending);
  v_.counters[kArenaTop] = top;
  v_.counters[kGarbage] = 0;
  v_.counters[kNeedy] = 0;
  return true;
}

// ---- sections ----------------------------------------------------------------------------------

void Engine::insert_into_block_list(int32_t s) {
  auto& list = block_sections_[v_.sec_block[s]];
  auto before = [&](int32_t a, int32_t b) {
    return cfg_.compat ? v_.sec_conn[a] < v_.sec_conn[b] : a < b;
  };
  list.insert(std::upper_bound(list.begin(), list.end(), s, before), s);
}

void Engine::remove_from_block_list(int32_t s) {
  auto& list = block_sections_[v_.sec_block[s]];
  list.erase(std::find(list.begin(), list.end(), s));
}

// Creates a section for `neuron` (spec §4.7): first free slot, a target brick from the brick's
// list, and a target block (uniform, or among the blocks whose receptive field holds the input
// pixel; compat: Hanami's connection-block search). `fixed_slot`
// re-creates a section that reduction freed, in the slot it kept reserved.
bool Engine::create_section(int32_t neuron, float offset, int32_t fixed_slot) {
  const int32_t brick = neuron_brick(neuron);
  if (v_.brick_kind(brick) == kOutput) return false;
  const int p = fixed_slot >= 0 ? fixed_slot : first_free_slot(in_use_[neuron]);
  if (p < 0) return false;  // all eight section slots taken: the chain stays as it is
  const int32_t s = neuron * kSectionsPerNeuron + p;
  const uint32_t pick = draw(cfg_.seed, kStreamSection, uint64_t(step_), uint32_t(s), 0);
  const int32_t target_brick = v_.brick_targets[brick * kTargetBricks + pick % kTargetBricks];
  if (target_brick < 0) return false;

  int32_t block;
  if (cfg_.compat) {
    int32_t conn = find_free_connection(
        target_brick, draw(cfg_.seed, kStreamSection, uint64_t(step_), uint32_t(s), 1));
    if (conn < 0) {
      resize_grid(target_brick);
      conn = find_free_connection(
          target_brick, draw(cfg_.seed, kStreamSection, uint64_t(step_), uint32_t(s), 2));
    }
    const int32_t dim_y = v_.brick_grid[target_brick * 2 + 1];
    v_.sec_conn[s] = conn;
    connection_use_[target_brick][conn / 64] |= uint64_t(1) << (conn % 64);
    block = v_.brick_first_block(target_brick) + (conn / 64) / dim_y;
  } else {
    const uint32_t pick_block = draw(cfg_.seed, kStreamSection, uint64_t(step_), uint32_t(s), 1);
    const int32_t n_blocks = v_.brick_blocks(target_brick);
    const bool field = cfg_.field_rows > 0 && v_.brick_kind(brick) == kInput;
    block = v_.brick_first_block(target_brick) +
            (field ? field_block(neuron - v_.brick_start(brick), n_blocks, cfg_.field_rows,
                                 cfg_.field_cols, cfg_.field_radius, pick_block)
                   : int32_t(pick_block % uint32_t(n_blocks)));
  }

  v_.sec_block[s] = block;
  v_.sec_offset[s] = offset;
  v_.sec_has_next[s] = 0;
  v_.sec_len[s] = 0;
  v_.sec_cap[s] = 0;
  v_.sec_start[s] = 0;
  in_use_[neuron] |= uint8_t(1u << p);
  v_.counters[kSections] += 1;
  insert_into_block_list(s);
  ensure_reserve(s);
  return true;
}

// Removes a section whose synapses reduction deleted (spec §5.7).
void Engine::free_section(int32_t s) {
  const int32_t neuron = s / kSectionsPerNeuron;
  remove_from_block_list(s);
  v_.counters[kGarbage] += v_.sec_cap[s];
  v_.counters[kSections] -= 1;
  v_.sec_len[s] = 0;
  v_.sec_cap[s] = 0;
  if (cfg_.compat) {
    // Hanami: the slot is released and the neuron asks for a new section with the same offset;
    // that request is usually overwritten by the next forward pass (bug B8, kept in compat mode).
    const int32_t brick = v_.block_brick(v_.sec_block[s]);
    const int32_t conn = v_.sec_conn[s];
    connection_use_[brick][conn / 64] &= ~(uint64_t(1) << (conn % 64));
    v_.sec_conn[s] = -1;
    v_.sec_block[s] = kNoSection;
    in_use_[neuron] &= uint8_t(~(1u << (s % kSectionsPerNeuron)));
    v_.request[neuron] = v_.sec_offset[s];
    request_candidates_.push_back(neuron);
  } else {
    // Default: the slot stays reserved and is re-created (new target) at the next growth step,
    // so the chain keeps covering the same range of source values.
    v_.sec_block[s] = kPendingSection;
    pending_sections_.push_back(s);
  }
}

void Engine::create_requested_sections() {
  if (cfg_.compat) {
    std::sort(request_candidates_.begin(), request_candidates_.end());
    request_candidates_.erase(std::unique(request_candidates_.begin(), request_candidates_.end()),
                              request_candidates_.end());
    for (int32_t n : request_candidates_) {
      if (v_.request[n] < 0.0f) continue;
      const float offset = v_.request[n];
      v_.request[n] = -1.0f;
      create_section(n, offset);
    }
    request_candidates_.clear();
    return;
  }
  if (!pending_sections_.empty()) {
    std::sort(pending_sections_.begin(), pending_sections_.end());
    for (int32_t s : pending_sections_) {
      const int32_t neuron = s / kSectionsPerNeuron;
      const int p = s % kSectionsPerNeuron;
      in_use_[neuron] &= uint8_t(~(1u << p));
      v_.sec_block[s] = kNoSection;
      // the re-created section keeps its place in the chain, successor included
      const uint8_t had_next = v_.sec_has_next[s];
      if (create_section(neuron, v_.sec_offset[s], p)) v_.sec_has_next[s] = had_next;
    }
    pending_sections_.clear();
  }
  if (requests_.empty()) return;
  std::sort(requests_.begin(), requests_.end(), [](const SectionRequest& a, const SectionRequest& b) {
    return a.neuron != b.neuron ? a.neuron < b.neuron : a.origin < b.origin;
  });
  for (const SectionRequest& r : requests_) create_section(r.neuron, r.offset);
  requests_.clear();
}

// ---- compat mode's connection-block grid -------------------------------------------------------

void Engine::rebuild_grid(int32_t brick) {
  const int32_t dims = v_.brick_grid[brick * 2] * v_.brick_grid[brick * 2 + 1];
  auto& use = connection_use_[brick];
  use.assign(dims, 0);
  for (int g = v_.brick_first_block(brick); g < v_.brick_first_block(brick) + v_.brick_blocks(brick);
       ++g)
    for (int32_t s : block_sections_[g])
      use[v_.sec_conn[s] / 64] |= uint64_t(1) << (v_.sec_conn[s] % 64);
}

// Hanami's searchTargetInBrick: a random connection block, then the first one (cyclically) with a
// free slot, lowest slot first. Returns connection block*64 + slot, or -1 when the grid is full.
int32_t Engine::find_free_connection(int32_t brick, uint32_t random) const {
  const auto& use = connection_use_[brick];
  const int32_t n = int32_t(use.size());
  if (n == 0) return -1;
  const int32_t start = int32_t(random % uint32_t(n));
  for (int32_t i = 0; i < n; ++i) {
    const int32_t c = (start + i) % n;
    if (use[c] != ~uint64_t(0)) {
      int slot = 0;
      while (use[c] & (uint64_t(1) << slot)) ++slot;
      return c * 64 + slot;
    }
  }
  return -1;
}

// Hanami's resizeConnections: the grid grows square while dimX is below the brick's block count;
// a section's target block is (connection block) / dimY, so only blocks 0..dimX-1 are reachable.
// Once dimX stops growing, growing dimY silently moves existing sections to other blocks (bug B1);
// targets beyond the new block's size then land on padding and are lost, as in Hanami.
void Engine::resize_grid(int32_t brick) {
  int32_t& dim_x = v_.brick_grid[brick * 2];
  int32_t& dim_y = v_.brick_grid[brick * 2 + 1];
  const int32_t blocks = v_.brick_blocks(brick);
  const int32_t old_x = dim_x;
  const int32_t new_x = v_.brick_kind(brick) == kOutput ? blocks : std::min(blocks, old_x + 1);
  const int32_t new_y = dim_y + 1;

  std::vector<int32_t> sections;
  const int32_t first = v_.brick_first_block(brick);
  for (int g = first; g < first + blocks; ++g) {
    sections.insert(sections.end(), block_sections_[g].begin(), block_sections_[g].end());
    block_sections_[g].clear();
  }
  for (int32_t s : sections) {
    int32_t c = v_.sec_conn[s] / 64;
    const int32_t slot = v_.sec_conn[s] % 64;
    if (new_x != old_x && old_x > 0) c = (c / old_x) * new_x + (c % old_x);
    v_.sec_conn[s] = c * 64 + slot;
    v_.sec_block[s] = first + c / new_y;
  }
  dim_x = new_x;
  dim_y = new_y;
  for (int32_t s : sections) block_sections_[v_.sec_block[s]].push_back(s);
  for (int g = first; g < first + blocks; ++g)
    std::sort(block_sections_[g].begin(), block_sections_[g].end(),
              [&](int32_t a, int32_t b) { return v_.sec_conn[a] < v_.sec_conn[b]; });
  rebuild_grid(brick);
}

// ---- walks -------------------------------------------------------------------------------------

// Creates the synapse of an empty slot that a training walk reached (spec §4.4): its border is all
// the remaining potential, so the walk ends here. Returns its target neuron inside the block.
int32_t Engine::create_synapse(Lane& lane, int32_t s, int k, float p_above, float lower,
                              int32_t block_neurons) {
  const int64_t base = v_.sec_start[s];
  const int len = v_.sec_len[s];
  const uint32_t key = uint32_t(s);
  const uint32_t pick_target = draw(cfg_.seed, kStreamSynapse, uint64_t(step_), key, 0);
  const uint32_t pick_weight = draw(cfg_.seed, kStreamSynapse, uint64_t(step_), key, 1);
  const uint32_t pick_sign = draw(cfg_.seed, kStreamSynapse, uint64_t(step_), key, 2);
  const float old_upper = k < len ? v_.syn_upper[base + k] : lower;
  v_.syn_target[base + k] = uint8_t(pick_target % uint32_t(block_neurons));
  v_.syn_weight[base + k] = initial_weight(pick_weight, pick_sign, cfg_.init_scale);
  v_.syn_upper[base + k] = p_above;
  // Hanami keeps the borders of later slots, so their upper ends move with this one (only
  // happens for a hole that compat-mode reduction left in the middle of a section).
  const float shift = p_above - old_upper;
  for (int j = k + 1; j < len; ++j) v_.syn_upper[base + j] = v_.syn_upper[base + j] + shift;
  if (v_.syn_counter) v_.syn_counter[base + k] = kCounterStart;
  if (v_.syn_accum) v_.syn_accum[base + k] = 0.0f;
  if (v_.syn_pending) v_.syn_pending[base + k] = 0.0f;
  if (k >= len) v_.sec_len[s] = uint8_t(k + 1);
  lane.synapses_created += 1;
  return v_.syn_target[base + k];
}

// Training walk of one section (spec §4.3): creates, splits, adds contributions, asks for a
// successor section when the signal survives all 63 slots. Returns the number of reached slots.
int32_t Engine::walk_train(Lane& lane, int32_t s, float potential, float* block_input,
                           int32_t block_neurons) {
  const float p_above = potential - v_.sec_offset[s];
  const int64_t base = v_.sec_start[s];
  float* upper = v_.syn_upper + base;
  float* weight = v_.syn_weight + base;
  uint8_t* target = v_.syn_target + base;
  const int len = v_.sec_len[s];
  // Inputs (pixels) walk long, often whole sections: find the plain prefix with vectors first.
  // Hidden values end their walks early, and the plain loop below is cheaper for them.
  const bool input_source = v_.brick_kind(neuron_brick(s / kSectionsPerNeuron)) == kInput;
  int k = input_source ? fast_prefix(upper, target, len, p_above, !cfg_.reduction) : 0;
  for (int j = 0; j < k; ++j) block_input[target[j]] += weight[j];
  float lower = k > 0 ? upper[k - 1] : 0.0f;
  for (; k < len; ++k) {
    const float r = remaining(p_above, lower);
    if (!reached(r)) return finish_walk(lane, s, k, false);
    const uint8_t t = target[k];
    const float u = upper[k];
    const float border = u - lower;
    // Fast path: a full synapse. Anything else (empty slot, split, partial cover) ends the walk:
    // after a partly covered slot the remaining potential is negative.
    if (t == kEmptyTarget || r < border) {
      if (t == kEmptyTarget) {
        const int32_t created = create_synapse(lane, s, k, p_above, lower, block_neurons);
        block_input[created] += contribution(weight[k], r, upper[k] - lower);
      } else {
        float b = border;
        // The gradient rule splits only the last slot, which adds a slot. A split inside the
        // section would just move half of this slot's interval to the next synapse: the borders
        // would keep drifting under weights that the optimizer fits to them.
        if (should_split(border, r, k) && !(cfg_.gradient_rule && k + 1 < len)) {
          upper[k] = split_upper(lower, u);
          if (k + 1 == len) {  // the upper half becomes an empty slot with a border
            upper[k + 1] = u;
            weight[k + 1] = 0.0f;
            target[k + 1] = kEmptyTarget;
            if (v_.syn_counter) v_.syn_counter[base + k + 1] = 0;
            if (v_.syn_accum) v_.syn_accum[base + k + 1] = 0.0f;
            if (v_.syn_pending) v_.syn_pending[base + k + 1] = 0.0f;
            v_.sec_len[s] = uint8_t(len + 1);
          }
          b = upper[k] - lower;
        }
        block_input[t] += contribution(weight[k], r, b);
      }
      if (v_.sec_len[s] != len) lane.grown.push_back(s);
      return finish_walk(lane, s, k + 1, false);
    }
    block_input[t] += weight[k];
    lower = u;
  }
  const float r = remaining(p_above, lower);
  if (k < kSynapsesPerSection) {
    if (!reached(r)) return finish_walk(lane, s, k, false);
    const int32_t created = create_synapse(lane, s, k, p_above, lower, block_neurons);
    block_input[created] += contribution(weight[k], r, upper[k] - lower);
    lane.grown.push_back(s);
    return finish_walk(lane, s, k + 1, false);
  }
  // the signal survived all 63 slots: the chain needs a successor (spec §4.7)
  return finish_walk(lane, s, k, reached(r) ? 1 : 0, lower);
}

// Records what a finished walk asks for: a successor section when the signal survived the whole
// section and none exists yet. Compat mode keeps Hanami's per-neuron flag, which every walk
// overwrites (last writer wins, bug B3).
int32_t Engine::finish_walk(Lane& lane, int32_t s, int32_t reached_slots, bool survived,
                            float last_upper) {
  const int32_t neuron = s / kSectionsPerNeuron;
  const bool wants_next = survived && !v_.sec_has_next[s];
  if (wants_next) {
    const float offset = chain_offset(v_.sec_offset[s], last_upper, cfg_.compat);
    v_.sec_has_next[s] = 1;
    if (cfg_.compat)
      lane.flags.emplace_back(neuron, offset);
    else
      lane.requests.push_back({neuron, s, offset});
  } else if (cfg_.compat) {
    lane.flags.emplace_back(neuron, -1.0f);
  }
  return reached_slots;
}

void Engine::walk_infer(int32_t s, float potential, float* block_input) const {
  const int64_t base = v_.sec_start[s];
  // Inputs (pixels) walk long, often whole sections: find the plain prefix with vectors first.
  // Hidden values end their walks early, and the plain loop is cheaper for them.
  const bool input_source = v_.brick_kind(neuron_brick(s / kSectionsPerNeuron)) == kInput;
  infer_walk(v_.syn_upper + base, v_.syn_target + base, v_.syn_weight + base, v_.sec_len[s],
             potential - v_.sec_offset[s], input_source, !cfg_.reduction, block_input);
}

// ---- phases ------------------------------------------------------------------------------------

// Raw input values become the potentials of the input neurons; negative values leave the neuron
// inactive (spec §4.2). Returns false when a new first section found no room in the arena.
bool Engine::input_phase(const float* x, bool training) {
  for (int b = 0; b < v_.n_bricks; ++b) {
    if (v_.brick_kind(b) != kInput) continue;
    const int32_t start = v_.brick_start(b);
    const int count = v_.brick_count(b);
    const float* __restrict values = x + v_.brick_io(b);
    float* __restrict potential = v_.potential + start;
    uint8_t* __restrict active = v_.active + start;
    for (int i = 0; i < count; ++i) {  // vectorised
      potential[i] = values[i];
      active[i] = values[i] > 0.0f;
    }
    if (!training) continue;
    // CPU timing: an input neuron's first section exists before this cycle's walks
    const uint8_t* __restrict in_use = in_use_.data() + start;
    for (int i = 0; i < count; ++i)
      if ((active[i] & (in_use[i] == 0)) != 0)
        for (int f = 0; f < cfg_.input_fan_in; ++f) create_section(start + i, 0.0f);
  }
  if (v_.counters[kNeedy] == 0) return true;
  return cfg_.gradient_rule ? reserve_waiting() : compact(kCompactSlack);
}

void Engine::share_of(int b, int member, int members, int* first, int* last) const {
  const int32_t begin = v_.brick_first_block(b), end = begin + v_.brick_blocks(b);
  if (members == 1) {
    *first = begin;
    *last = end;
    return;
  }
  // contiguous runs of blocks with about the same number of sections each
  int64_t total = 0;
  for (int g = begin; g < end; ++g) total += int64_t(block_sections_[g].size());
  int64_t seen = 0;
  int g = begin;
  const int64_t from = total * member / members, to = total * (member + 1) / members;
  while (g < end && seen + int64_t(block_sections_[g].size()) / 2 < from) seen += block_sections_[g++].size();
  *first = member == 0 ? begin : g;
  while (g < end && seen + int64_t(block_sections_[g].size()) / 2 < to) seen += block_sections_[g++].size();
  *last = member == members - 1 ? end : g;
}

void Engine::forward_blocks(int b, int first, int last, bool training, Lane& lane) {
  auto& visits = lane.visits[b];
  for (int g = first; g < last; ++g) {
    float* block_input = block_input_.data() + size_t(g) * kNeuronsPerBlock;
    const int32_t block_neurons = v_.block_count(g);
    // Only a few sources are active per sample: pick their sections without a branch per section
    // (an unpredictable one), keeping the processing order.
    const auto& sections = block_sections_[g];
    auto& active = lane.active_sections;
    active.resize(sections.size());
    size_t n_active = 0;
    for (int32_t s : sections) {
      active[n_active] = s;
      n_active += v_.active[s / kSectionsPerNeuron];
    }
    for (size_t i = 0; i < n_active; ++i) {
      const int32_t s = active[i];
      // The sections of a sample lie all over the arena: ask for the next ones early.
      if (i + 2 < n_active) {
        const int32_t later = active[i + 2];
        __builtin_prefetch(v_.sec_start + later);
        __builtin_prefetch(v_.sec_offset + later);
        __builtin_prefetch(v_.sec_len + later);
      }
      if (i + 1 < n_active) {
        const int64_t next = v_.sec_start[active[i + 1]];
        __builtin_prefetch(v_.syn_upper + next);
        __builtin_prefetch(v_.syn_weight + next);
        __builtin_prefetch(v_.syn_target + next);
      }
      const float potential = v_.potential[s / kSectionsPerNeuron];
      if (training)
        visits.push_back({s, walk_train(lane, s, potential, block_input, block_neurons)});
      else
        walk_infer(s, potential, block_input);
    }
  }
}

void Engine::forward_brick(int b, bool training, Team* team) {
  for (Lane& lane : lanes_) lane.visits[b].clear();
  if (team == nullptr || v_.brick_blocks(b) < 2) {
    forward_blocks(b, v_.brick_first_block(b), v_.brick_first_block(b) + v_.brick_blocks(b),
                   training, lanes_[0]);
  } else {
    team->run([&](int member) {
      int first, last;
      share_of(b, member, team->size(), &first, &last);
      forward_blocks(b, first, last, training, lanes_[member]);
    });
  }
  if (training) merge_lanes();
}

// Applies what the walks of a brick collected, in member order = processing order.
void Engine::merge_lanes() {
  std::vector<int32_t> grown;
  for (Lane& lane : lanes_) {
    for (const auto& [neuron, value] : lane.flags) {  // compat: the last writer wins
      v_.request[neuron] = value;
      if (value >= 0.0f) request_candidates_.push_back(neuron);
    }
    lane.flags.clear();
    requests_.insert(requests_.end(), lane.requests.begin(), lane.requests.end());
    lane.requests.clear();
    grown.insert(grown.end(), lane.grown.begin(), lane.grown.end());
    lane.grown.clear();
    v_.counters[kSynapses] += lane.synapses_created;
    lane.synapses_created = 0;
  }
  // reserves are renewed in section order, so the arena layout does not depend on the threads
  std::sort(grown.begin(), grown.end());
  for (int32_t s : grown) ensure_reserve(s);
}

void Engine::update_neurons(int b, bool training, const float* target, float* output) {
  const int32_t start = v_.brick_start(b);
  const int32_t first_block = v_.brick_first_block(b);
  float* input = block_input_.data() + size_t(first_block) * kNeuronsPerBlock;
  if (v_.brick_kind(b) == kOutput) {
    for (int i = 0; i < v_.brick_count(b); ++i) {
      const float o = output_activation(input[i]);
      v_.potential[start + i] = o;
      v_.active[start + i] = 0;
      output[v_.brick_io(b) + i] = o;
      if (training) *delta_of(first_block, i) = output_delta(o, target[v_.brick_io(b) + i]);
      if (v_.syn_counter) *positive_of(first_block, i) = o > 0.0f;
    }
  } else {
    // hidden_step (rules.h) in three passes: the cheap part for every neuron without branches,
    // then the few that fired get their log2 activation and, if new, a first section.
    const int count = v_.brick_count(b);
    float* __restrict potential = v_.potential + start;
    uint8_t* __restrict refractory = v_.refractory + start;
    uint8_t* __restrict fired = v_.active + start;
    const float cooldown = cfg_.cooldown;
    const uint8_t refractory_time = cfg_.refractory_time;
    for (int i = 0; i < count; ++i) {  // byte-wide pass (vectorised)
      const uint8_t shifted = uint8_t(refractory[i] >> 1);
      fired[i] = shifted == 0;  // for now: "input is let in"
      refractory[i] = shifted == 0 ? refractory_time : shifted;
    }
    for (int i = 0; i < count; ++i) {  // float pass (vectorised)
      const float decayed = potential[i] / cooldown;
      const float p = fired[i] ? decayed + input[i] : decayed;
      fired[i] = p > 0.0f;
      potential[i] = p > 0.0f ? p : 0.0f;  // pre-activation for now
    }
    auto& active = active_hidden_[b];
    active.resize(count);
    int n_active = 0;
    for (int i = 0; i < count; ++i) {
      active[n_active] = start + i;
      n_active += fired[i];
    }
    active.resize(n_active);
    if (cfg_.compat && training) std::fill_n(v_.request + start, count, -1.0f);
    if (v_.syn_counter)
      for (int i = 0; i < count; ++i) *positive_of(first_block, i) = 0;
    auto& values = scratch_values_;
    values.resize(2 * size_t(n_active));
    for (int j = 0; j < n_active; ++j) values[j] = v_.potential[active[j]];
    hidden_activation_batch(values.data(), values.data() + n_active, n_active);
    for (int j = 0; j < n_active; ++j) v_.potential[active[j]] = values[n_active + j];
    for (int32_t n : active) {
      if (v_.syn_counter) *positive_of(first_block, n - start) = v_.potential[n] > 0.0f;
      if (!training || in_use_[n] != 0) continue;
      if (cfg_.compat) {
        v_.request[n] = 0.0f;
        request_candidates_.push_back(n);
      } else {
        requests_.push_back({n, -1, 0.0f});
      }
    }
  }
  std::fill_n(input, size_t(v_.brick_blocks(b)) * kNeuronsPerBlock, 0.0f);
}

// Hanami's backward rule (spec §5): bricks in reverse, neuron deltas from their section slots,
// then every reached synapse into the brick moves by lr * delta of its target.
void Engine::backward(Team* team) {
  for (int b = v_.n_bricks - 1; b >= 0; --b) {
    const int32_t kind = v_.brick_kind(b);
    if (kind == kInput) continue;
    if (kind == kHidden) {
      const int32_t start = v_.brick_start(b);
      const int32_t first_block = v_.brick_first_block(b);
      for (int g = first_block; g < first_block + v_.brick_blocks(b); ++g)
        std::fill_n(block_delta_.data() + size_t(g) * kDeltaStride, kNeuronsPerBlock, 0.0f);
      // hidden_delta (rules.h) for the neurons that fired; inactive ones keep delta 0
      const auto& active = active_hidden_[b];
      const int n_active = int(active.size());
      auto& values = scratch_values_;
      values.resize(2 * size_t(n_active));
      for (int j = 0; j < n_active; ++j) values[j] = v_.potential[active[j]];
      exp2_negative_batch(values.data(), values.data() + n_active, n_active);
      for (int j = 0; j < n_active; ++j) {
        const int32_t n = active[j];
        float sum = 0.0f;
        for (int p = 0; p < kSectionsPerNeuron; ++p) sum = sum + slot_value_[size_t(n) * 8 + p];
        *delta_of(first_block, n - start) = (sum * kLog2Slope) * values[n_active + j];
      }
    }
    if (team == nullptr) {
      for (Lane& lane : lanes_) backward_visits(b, lane.visits[b].data(), lane.visits[b].data() + lane.visits[b].size());
    } else if (v_.brick_blocks(b) < 2) {
      // A one-block brick (an output brick) was walked by one member, but every section's update
      // touches only its own slots and sum: the members share its visits in contiguous halves.
      const auto& visits = lanes_[0].visits[b];
      team->run([&](int member) {
        const size_t n = visits.size(), members = size_t(team->size());
        backward_visits(b, visits.data() + n * member / members, visits.data() + n * (member + 1) / members);
      });
    } else {  // each member updates the sections it walked: the same blocks as in forward
      team->run([&](int member) {
        const auto& visits = lanes_[member].visits[b];
        backward_visits(b, visits.data(), visits.data() + visits.size());
      });
    }
  }
  for (Lane& lane : lanes_)
    for (const auto& visits : lane.visits)
      for (const Visit& visit : visits) slot_value_[visit.section] = 0.0f;
  if (v_.syn_pending)
    for (Lane& lane : lanes_)
      for (const auto& visits : lane.visits)
        for (const Visit& visit : visits) mark_for_batch(visit.section);
}

void Engine::mark_for_batch(int32_t s) {
  if (batch_marked_[s]) return;
  batch_marked_[s] = 1;
  batch_sections_.push_back(s);
}

// The end of a batch: only the sections the batch walked (or, after a resumed call, every live
// one) can hold pending sums, at their slots 0..len-1; a freed section has len 0.
void Engine::flush_batch() {
  for (int32_t s : batch_sections_) {
    batch_marked_[s] = 0;
    if (v_.sec_block[s] < 0) continue;
    const int64_t base = v_.sec_start[s];
    batch_apply(v_.syn_weight + base, v_.syn_accum ? v_.syn_accum + base : nullptr,
                v_.syn_pending + base, v_.sec_len[s], cfg_.learning_rate);
  }
  batch_sections_.clear();
}

// Deltas are read without branches: a block's delta row has 256 entries, so the empty marker 0xFF
// reads a zero, and a zero delta leaves the weight bit-identical (w - lr*0 == w).
void Engine::backward_visits(int b, const Visit* first, const Visit* last) {
  const float lr = cfg_.learning_rate;
  for (const Visit* it = first; it != last; ++it) {
    const Visit& visit = *it;
    const int32_t s = visit.section;
    const int32_t g = v_.sec_block[s];
    const float* __restrict delta = block_delta_.data() + size_t(g) * kDeltaStride;
    const int64_t base = v_.sec_start[s];
    float* __restrict weight = v_.syn_weight + base;
    const uint8_t* __restrict target = v_.syn_target + base;
    const int reached_slots = visit.reached;
    if (v_.syn_counter) {  // reduction bookkeeping (rules.h: counted), without branches
      uint8_t* __restrict counter = v_.syn_counter + base;
      const uint8_t* __restrict positive = block_positive_.data() + size_t(g) * kDeltaStride;
      for (int k = 0; k < reached_slots; ++k) {
        const uint8_t t = target[k];
        const bool useful = positive[t] == (weight[k] > 0.0f);
        counter[k] = uint8_t(counter[k] + (t != kEmptyTarget && counter[k] < kCounterPersistent && useful));
      }
    }
    const bool source_is_input = v_.brick_kind(neuron_brick(s / kSectionsPerNeuron)) == kInput;
    if (v_.syn_pending) {  // batches: the step waits for the end of the batch (engine.h)
      float* __restrict pending = v_.syn_pending + base;
      if (source_is_input)
        batch_accumulate(pending, target, delta, reached_slots);
      else
        slot_value_[s] = batch_accumulate_with_sum(pending, weight, target, delta, reached_slots);
    } else if (v_.syn_accum) {
      slot_value_[s] = adagrad_step_with_sum(weight, v_.syn_accum + base, target, delta,
                                             reached_slots, lr);
    } else if (source_is_input) {
      // nobody reads an input neuron's delta: only the weights move
      sgd_step(weight, target, delta, reached_slots, lr);
    } else {
      slot_value_[s] = sgd_step_with_sum(weight, target, delta, reached_slots, lr);
    }
  }
}

// Reduction (spec §5.7): counters of non-persistent synapses decay; a synapse at 0 is deleted and
// a section without synapses is freed. Default mode removes deleted synapses cleanly (later slots
// move down, keeping their borders); compat mode shifts only the next slot, like Hanami (bug B7).
void Engine::reduce() {
  std::vector<int32_t> emptied;
  std::vector<float> border(kSynapsesPerSection);
  for (int g = 0; g < v_.n_blocks; ++g) {
    for (int32_t s : block_sections_[g]) {
      const int64_t base = v_.sec_start[s];
      float* upper = v_.syn_upper + base;
      float* weight = v_.syn_weight + base;
      uint8_t* target = v_.syn_target + base;
      uint8_t* counter = v_.syn_counter + base;
      float* accum = v_.syn_accum ? v_.syn_accum + base : nullptr;  // moves with its synapse
      float* pending = v_.syn_pending ? v_.syn_pending + base : nullptr;  // so does a batch sum
      int len = v_.sec_len[s];
      int live = 0;
      if (!cfg_.compat) {
        float lower = 0.0f, shift = 0.0f;
        int kept = 0;
        for (int k = 0; k < len; ++k) {
          const float u = upper[k];
          const float b = u - lower;
          lower = u;
          if (target[k] != kEmptyTarget) {
            uint8_t c = counter[k];
            if (c < kCounterPersistent) c = uint8_t(c - 1);
            if (c == 0) {
              shift = shift + b;
              v_.counters[kSynapses] -= 1;
              continue;
            }
            counter[k] = c;
            ++live;
          }
          upper[kept] = u - shift;
          weight[kept] = weight[k];
          target[kept] = target[k];
          counter[kept] = counter[k];
          if (accum) accum[kept] = accum[k];
          if (pending) pending[kept] = pending[k];
          ++kept;
        }
        len = kept;
      } else {
        float lower = 0.0f;
        for (int k = 0; k < len; ++k) {
          border[k] = upper[k] - lower;
          lower = upper[k];
        }
        for (int k = 0; k < len; ++k) {
          if (target[k] == kEmptyTarget) continue;
          if (counter[k] < kCounterPersistent) counter[k] = uint8_t(counter[k] - 1);
          if (counter[k] != 0) {
            ++live;
            continue;
          }
          v_.counters[kSynapses] -= 1;
          if (k + 1 < len) {  // only the next slot moves down; it is skipped in this round
            border[k] = border[k + 1];
            weight[k] = weight[k + 1];
            target[k] = target[k + 1];
            counter[k] = counter[k + 1];
            border[k + 1] = 0.0f;
            weight[k + 1] = 0.0f;
            target[k + 1] = kEmptyTarget;
            counter[k + 1] = 0;
            if (accum) {
              accum[k] = accum[k + 1];
              accum[k + 1] = 0.0f;
            }
            if (pending) {
              pending[k] = pending[k + 1];
              pending[k + 1] = 0.0f;
            }
          } else {
            border[k] = 0.0f;
            weight[k] = 0.0f;
            target[k] = kEmptyTarget;
            counter[k] = 0;
            if (accum) accum[k] = 0.0f;
            if (pending) pending[k] = 0.0f;
          }
        }
        float running = 0.0f;
        for (int k = 0; k < len; ++k) {
          running = running + border[k];
          upper[k] = running;
        }
        // slots moved out of a freed section are lost with it (Hanami frees it with them)
        if (live == 0)
          for (int k = 0; k < len; ++k)
            if (target[k] != kEmptyTarget) v_.counters[kSynapses] -= 1;
      }
      while (len > 0 && target[len - 1] == kEmptyTarget &&
             upper[len - 1] == (len > 1 ? upper[len - 2] : 0.0f))
        --len;  // trailing empty slots without a border carry nothing
      v_.sec_len[s] = uint8_t(len);
      if (live == 0) emptied.push_back(s);
    }
  }
  for (int32_t s : emptied) free_section(s);
}

// ---- drivers -----------------------------------------------------------------------------------

int64_t Engine::train(const float* inputs, int64_t n_inputs, const float* targets,
                      int64_t n_outputs, float* outputs, int64_t start, int64_t count,
                      int64_t batch_size) {
  // A team pays off only over many samples; one sample per call stays on the calling thread.
  std::unique_ptr<Team> team;
  if (int(lanes_.size()) > 1 && count - start >= 64) team = std::make_unique<Team>(int(lanes_.size()));
  TeamChooser chooser(team.get());
  if (v_.syn_pending && start % batch_size != 0) {
    // resumed in the middle of a batch: an earlier call left sums somewhere in the arena
    for (int g = 0; g < v_.n_blocks; ++g)
      for (int32_t s : block_sections_[g]) mark_for_batch(s);
  }
  for (int64_t i = start; i < count; ++i) {
    Team* helpers = chooser.before_sample(i);
    // sample boundary: the only place where the arena is compacted (never with the gradient
    // rule, whose slots must not move)
    if (cfg_.gradient_rule) {
      if (v_.counters[kNeedy] > 0 && !reserve_waiting()) return i;
    } else if (v_.counters[kNeedy] > 0 ||
               v_.counters[kGarbage] > std::max<int64_t>(4096, v_.counters[kArenaTop] / 4)) {
      if (!compact(kCompactSlack)) return i;
    }
    step_ = v_.counters[kStep];
    if (!input_phase(inputs + i * n_inputs, true)) return i;  // retried after the arena grew
    for (int b = 0; b < v_.n_bricks; ++b) {
      if (v_.brick_kind(b) == kInput) continue;
      forward_brick(b, true, helpers);
      update_neurons(b, true, targets + i * n_outputs, outputs + i * n_outputs);
    }
    create_requested_sections();
    // the gradient rule only grows here: autograd and a torch optimizer learn the weights
    if (!cfg_.gradient_rule) backward(helpers);
    v_.counters[kStep] = step_ + 1;
    if (!cfg_.gradient_rule && cfg_.reduction && v_.counters[kStep] % kReductionInterval == 0) reduce();
    if (v_.syn_pending && ((i + 1) % batch_size == 0 || i + 1 == count)) flush_batch();
  }
  return count;
}

void Engine::predict(const float* inputs, int64_t n_inputs, float* outputs, int64_t n_outputs,
                     int64_t count) {
  std::unique_ptr<Team> team;
  if (int(lanes_.size()) > 1 && count >= 64) team = std::make_unique<Team>(int(lanes_.size()));
  TeamChooser chooser(team.get());
  for (int64_t i = 0; i < count; ++i) {
    Team* helpers = chooser.before_sample(i);
    input_phase(inputs + i * n_inputs, false);
    for (int b = 0; b < v_.n_bricks; ++b) {
      if (v_.brick_kind(b) == kInput) continue;
      forward_brick(b, false, helpers);
      update_neurons(b, false, nullptr, outputs + i * n_outputs);
    }
  }
}

}  // namespace hanami
