// Hanami's online learning cycle (train_) as plain, allocation-free code that runs on the CPU and,
// spread over one thread block, on the GPU: the same steps in the same order as Engine::train in
// the default mode (csrc/cpu/engine.cpp), so that both grow the identical network, arena layout
// included.
//
// Everything works on raw pointers: the cluster's tensors (TrainNet) and one scratch buffer whose
// size the host computes with scratch_bytes() before the call. No STL container, no exception, no
// allocation; the few sorts are heap sorts over unique keys (so any correct sort gives the
// engine's order). The per-block section lists that the engine keeps in vectors are rebuilt from
// sec_block when needed (ascending section id: the default mode's processing order).
//
// Parallel structure. A sample's cycle is a sequence of phases. A phase either runs `n` items
// that are independent of each other (team.for_each: any order, or all at once, gives the same
// result), or is serial work of the team's leader (slot allocation, sorted growth). Phases are
// separated by team.sync(). The Team type is the caller's:
//   - on the GPU (csrc/cuda/train_cuda.cu) the threads of one block: for_each is a block-stride
//     loop, sync() is __syncthreads(), add() an atomic add;
//   - on the CPU (csrc/cpu/portable_cpu.cpp), for the tests: one thread that runs every item in
//     ascending or in descending order, or a few threads with a barrier, like a thread block.
//     The tests run all three against the engine, so an item that depended on another item of
//     its phase, or a missing sync, would show up there.
// Floats are added in the engine's order: the walks store each slot's contribution, a counting
// sort orders them by target neuron while keeping the processing order (sections of the block in
// ascending id, slots in order), and one item per target neuron adds its list, so the GPU needs
// no float atomics.
//
// Team-wide scalars (counts of appended requests, flags) live in the scratch buffer (Shared), so
// that every thread of a block sees them after a sync.
//
// Not here: compat mode's learning (Hanami's connection-block grid and last-writer-wins requests);
// callers refuse it. Request mode (predict) covers compat mode: its sections are processed in
// connection-slot order (TrainNet::sec_conn).
#pragma once

#include <cstdint>

#include "../cluster_state.h"
#include "../rules.h"

#if defined(__CUDACC__)
#define HANAMI_STEP __host__ __device__ inline
#else
#define HANAMI_STEP inline
#endif

namespace hanami {
namespace portable {

constexpr int kGrowSlack = 7;     // engine.cpp: spare slots when a section outgrows its reserve
constexpr int kCompactSlack = 2;  // engine.cpp: spare slots per section after a compaction
constexpr int kDeltaStride = 256; // a block's delta row: any u8 target (0xFF too) reads an entry
constexpr int kListChunk = 128;   // section ids per chunk when the block lists are rebuilt
constexpr int kScanWidth = 8;     // slots whose loads the neuron scan issues together

// Raw views of the cluster's tensors (cluster_state.h). syn_counter is null without reduction,
// syn_accum null without Adagrad, syn_pending null for online learning.
struct TrainNet {
  int n_bricks = 0;
  int n_neurons = 0;
  int n_blocks = 0;
  const int32_t* brick_info = nullptr;
  const int32_t* brick_targets = nullptr;
  const int32_t* block_info = nullptr;
  float* potential = nullptr;
  uint8_t* active = nullptr;
  uint8_t* refractory = nullptr;
  int32_t* sec_block = nullptr;
  float* sec_offset = nullptr;
  uint8_t* sec_has_next = nullptr;
  int32_t* sec_start = nullptr;
  uint8_t* sec_len = nullptr;
  uint8_t* sec_cap = nullptr;
  const int32_t* sec_conn = nullptr;  // compat mode's connection slots (request mode only), else null
  float* syn_weight = nullptr;
  float* syn_upper = nullptr;
  uint8_t* syn_target = nullptr;
  uint8_t* syn_counter = nullptr;
  float* syn_accum = nullptr;
  float* syn_pending = nullptr;
  int64_t capacity = 0;
  int64_t* counters = nullptr;

  HANAMI_STEP int32_t brick_start(int b) const { return brick_info[b * 5 + 0]; }
  HANAMI_STEP int32_t brick_count(int b) const { return brick_info[b * 5 + 1]; }
  HANAMI_STEP int32_t brick_kind(int b) const { return brick_info[b * 5 + 2]; }
  HANAMI_STEP int32_t brick_io(int b) const { return brick_info[b * 5 + 3]; }
  HANAMI_STEP int32_t brick_first_block(int b) const { return brick_info[b * 5 + 4]; }
  HANAMI_STEP int32_t brick_blocks(int b) const {
    return (brick_count(b) + kNeuronsPerBlock - 1) / kNeuronsPerBlock;
  }
  HANAMI_STEP int32_t block_count(int g) const { return block_info[g * 3 + 2]; }
};

struct TrainConfig {
  uint64_t seed = 0;
  float cooldown = 1e9f;
  uint8_t refractory_time = 1;
  bool reduction = false;
  float learning_rate = 0.05f;
  double init_scale = 0.2;
  bool adagrad = false;
  int input_fan_in = 1;
  int field_rows = 0;  // receptive fields (rules.h: field_block); 0: target blocks are uniform
  int field_cols = 0;
  float field_radius = 0.0f;
  bool gradient_rule = false;  // learning_rule="gradient": grow only (engine.cpp)
};

// The config vector (cluster_state.h, ConfigIndex) as the step needs it; compat mode and the
// learning rule are the caller's to check.
HANAMI_STEP TrainConfig config_from(const double* c) {
  TrainConfig cfg;
  cfg.seed = uint64_t(c[kSeed]);
  cfg.cooldown = float(c[kCooldown]);
  cfg.refractory_time = uint8_t(c[kRefractoryTime]);
  cfg.reduction = c[kReduction] != 0.0;
  cfg.learning_rate = float(c[kLearningRate]);
  cfg.init_scale = c[kInitScale];
  cfg.adagrad = c[kOptimizer] == 1.0;
  const int fan_in = int(c[kInputFanIn]);
  cfg.input_fan_in = fan_in < 1 ? 1 : fan_in > kSectionsPerNeuron ? kSectionsPerNeuron : fan_in;
  cfg.field_rows = int(c[kFieldRows]) > 0 ? int(c[kFieldRows]) : 0;
  cfg.field_cols = int(c[kFieldCols]) > 0 ? int(c[kFieldCols]) : 0;
  cfg.field_radius = float(c[kFieldRadius]);
  cfg.gradient_rule = c[kLearningRule] == 1.0;
  return cfg;
}

// A request for a new section: key = neuron * 2^32 + (origin + 1), origin = the section whose
// signal survived, or -1 for the first section of a newly firing neuron (unique per sample).
struct Request {
  int64_t key;
  float offset;
};

// Team-wide scalars (see the top of the file).
struct Shared {
  int32_t n_requests;   // entries of Scratch::requests
  int32_t n_grown;      // entries of Scratch::grown
  int32_t n_create;     // input neurons that fired for the first time (input phase)
  int32_t lists_valid;  // block_begin/block_list describe sec_block (no section created or freed since)
  int32_t any_pending;  // sections freed by reduction may wait for re-creation
  int32_t n_emptied;    // sections that reduction freed
  int32_t n_recreate;   // entries of Scratch::recreate
  int32_t verdict;      // the leader's answer to the team (does the compaction fit, ...)
  int64_t arena_total;  // compaction: slots of the packed arena
};

// The scratch buffer, carved by carve_scratch() from one allocation of scratch_bytes().
struct Scratch {
  float* block_delta;        // [blocks*256] deltas (entries >= 64 stay 0)
  uint8_t* block_positive;   // [blocks*256] potential > 0 (reduction)
  float* slot_value;         // [sections] per-section backward sums
  int32_t* block_begin;      // [blocks+1] CSR of the live sections per block
  int32_t* block_fill;       // [blocks] sections per block while the CSR is built
  int32_t* chunk_counts;     // [chunks * blocks] while the CSR is built (build_block_lists)
  int32_t* block_list;       // [sections]
  int32_t* visit_reached;    // [sections] reached slots of block_list[i] in this sample (0: none)
  int32_t* visit_start;      // [sections] first arena slot of block_list[i] when it was walked
  int32_t* grown;            // [sections] sections whose length grew in the current brick
  int32_t* new_start;        // [sections] compaction: new first slot of each section
  int32_t* recreate;         // [sections] sections freed by reduction, to be re-created
  Request* requests;         // [sections + neurons]
  float* slot_contrib;       // [capacity] what each reached slot adds to its target (forward)
  int32_t* target_rank;      // [sections * 64] per visit and target: count, then first place
  int32_t* list_begin;       // [blocks * 64] start of each target's list inside its block's part
  int32_t* list_count;       // [blocks * 64] length of each target's list
  int32_t* block_sorted;     // [blocks] start of each block's part of sorted_contrib
  float* sorted_contrib;     // [capacity] the brick's contributions sorted by target
  float* arena_temp;         // [capacity] compaction: one arena array at a time
  Shared* shared;
};

HANAMI_STEP int64_t align_up(int64_t n) { return (n + 15) & ~int64_t(15); }

HANAMI_STEP int64_t scratch_bytes(int64_t n_neurons, int64_t n_blocks, int64_t n_bricks,
                                  int64_t capacity) {
  (void)n_bricks;
  const int64_t sections = n_neurons * kSectionsPerNeuron;
  int64_t total = 0;
  total += align_up(n_blocks * kDeltaStride * 4);
  total += align_up(n_blocks * kDeltaStride);
  total += align_up(sections * 4);        // slot_value
  total += align_up((n_blocks + 1) * 4);  // block_begin
  total += align_up(n_blocks * 4);        // block_fill
  total += align_up((sections + kListChunk - 1) / kListChunk * n_blocks * 4);  // chunk_counts
  total += align_up(sections * 4) * 6;    // block_list, visit_reached, visit_start, grown, new_start, recreate
  total += align_up((sections + n_neurons) * int64_t(sizeof(Request)));
  total += align_up(capacity * 4) * 3;    // slot_contrib, sorted_contrib, arena_temp
  total += align_up(sections * kNeuronsPerBlock * 4);  // target_rank
  total += align_up(n_blocks * kNeuronsPerBlock * 4) * 2;  // list_begin, list_count
  total += align_up(n_blocks * 4);        // block_sorted
  total += align_up(int64_t(sizeof(Shared)));
  return total;
}

HANAMI_STEP char* take(char** p, int64_t bytes) {
  char* at = *p;
  *p += align_up(bytes);
  return at;
}

// Pointers only: every thread of a team carves the same buffer; begin_call() initialises it.
HANAMI_STEP Scratch carve_scratch(void* buffer, int64_t n_neurons, int64_t n_blocks,
                                  int64_t n_bricks, int64_t capacity) {
  (void)n_bricks;
  const int64_t sections = n_neurons * kSectionsPerNeuron;
  char* p = static_cast<char*>(buffer);
  Scratch s;
  s.block_delta = reinterpret_cast<float*>(take(&p, n_blocks * kDeltaStride * 4));
  s.block_positive = reinterpret_cast<uint8_t*>(take(&p, n_blocks * kDeltaStride));
  s.slot_value = reinterpret_cast<float*>(take(&p, sections * 4));
  s.block_begin = reinterpret_cast<int32_t*>(take(&p, (n_blocks + 1) * 4));
  s.block_fill = reinterpret_cast<int32_t*>(take(&p, n_blocks * 4));
  s.chunk_counts = reinterpret_cast<int32_t*>(take(&p, (sections + kListChunk - 1) / kListChunk * n_blocks * 4));
  s.block_list = reinterpret_cast<int32_t*>(take(&p, sections * 4));
  s.visit_reached = reinterpret_cast<int32_t*>(take(&p, sections * 4));
  s.visit_start = reinterpret_cast<int32_t*>(take(&p, sections * 4));
  s.grown = reinterpret_cast<int32_t*>(take(&p, sections * 4));
  s.new_start = reinterpret_cast<int32_t*>(take(&p, sections * 4));
  s.recreate = reinterpret_cast<int32_t*>(take(&p, sections * 4));
  s.requests = reinterpret_cast<Request*>(take(&p, (sections + n_neurons) * int64_t(sizeof(Request))));
  s.slot_contrib = reinterpret_cast<float*>(take(&p, capacity * 4));
  s.target_rank = reinterpret_cast<int32_t*>(take(&p, sections * kNeuronsPerBlock * 4));
  s.list_begin = reinterpret_cast<int32_t*>(take(&p, n_blocks * kNeuronsPerBlock * 4));
  s.list_count = reinterpret_cast<int32_t*>(take(&p, n_blocks * kNeuronsPerBlock * 4));
  s.block_sorted = reinterpret_cast<int32_t*>(take(&p, n_blocks * 4));
  s.sorted_contrib = reinterpret_cast<float*>(take(&p, capacity * 4));
  s.arena_temp = reinterpret_cast<float*>(take(&p, capacity * 4));
  s.shared = reinterpret_cast<Shared*>(take(&p, int64_t(sizeof(Shared))));
  return s;
}

// ---- small helpers ----------------------------------------------------------------------------

HANAMI_STEP int reserve_for(int len, int slack) {
  return len + slack < kSynapsesPerSection ? len + slack : kSynapsesPerSection;
}

// the section slots of a neuron in use (sec_block != -1: live or pending), as a bit mask
HANAMI_STEP uint32_t in_use(const TrainNet& v, int32_t neuron) {
  uint32_t mask = 0;
  for (int p = 0; p < kSectionsPerNeuron; ++p)
    if (v.sec_block[neuron * kSectionsPerNeuron + p] != kNoSection) mask |= 1u << p;
  return mask;
}

HANAMI_STEP int32_t brick_of_neuron(const TrainNet& v, int32_t neuron) {
  int lo = 0, hi = v.n_bricks - 1;  // the last brick whose first neuron is <= neuron
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (v.brick_start(mid) <= neuron)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// Heap sorts (unique keys: the order is the one any correct sort gives).
template <typename T, typename Key>
HANAMI_STEP void sift_down(T* a, int64_t root, int64_t n, Key key) {
  while (true) {
    int64_t child = 2 * root + 1;
    if (child >= n) return;
    if (child + 1 < n && key(a[child]) < key(a[child + 1])) ++child;
    if (!(key(a[root]) < key(a[child]))) return;
    const T t = a[root];
    a[root] = a[child];
    a[child] = t;
    root = child;
  }
}

template <typename T, typename Key>
HANAMI_STEP void heap_sort(T* a, int64_t n, Key key) {
  for (int64_t i = n / 2 - 1; i >= 0; --i) sift_down(a, i, n, key);
  for (int64_t end = n - 1; end > 0; --end) {
    const T t = a[0];
    a[0] = a[end];
    a[end] = t;
    sift_down(a, int64_t(0), end, key);
  }
}

struct IntKey {
  HANAMI_STEP int64_t operator()(int32_t x) const { return x; }
};
struct RequestKey {
  HANAMI_STEP int64_t operator()(const Request& r) const { return r.key; }
};
struct ConnectionKey {  // compat mode's processing order: by connection slot (unique per block)
  const int32_t* sec_conn;
  HANAMI_STEP int64_t operator()(int32_t s) const { return sec_conn[s]; }
};

template <typename T>
HANAMI_STEP void copy_n(const T* from, int64_t n, T* to) {
  for (int64_t i = 0; i < n; ++i) to[i] = from[i];
}

// ---- the live sections per block, ascending section id ------------------------------------------

// Rebuilds the lists when a section was created or freed since the last build, in parallel:
// the section ids are cut into chunks of kListChunk; each chunk counts its sections per block,
// each block turns its chunk counts into offsets (chunks in id order), and each chunk then places
// its sections, ascending id, at those offsets. In compat mode each block's list is then sorted
// by connection slot. Without a rebuild there is no sync.
template <class Team>
HANAMI_STEP void build_block_lists(const Team& team, const TrainNet& v, Scratch& sc) {
  if (sc.shared->lists_valid) return;
  const int64_t n_sections = int64_t(v.n_neurons) * kSectionsPerNeuron;
  const int64_t n_chunks = (n_sections + kListChunk - 1) / kListChunk;
  const int32_t n_blocks = v.n_blocks;
  team.for_each(n_chunks, [&](int64_t c) {
    int32_t* count = sc.chunk_counts + c * n_blocks;
    for (int32_t g = 0; g < n_blocks; ++g) count[g] = 0;
    const int64_t end = (c + 1) * kListChunk < n_sections ? (c + 1) * kListChunk : n_sections;
    for (int64_t s = c * kListChunk; s < end; ++s)
      if (v.sec_block[s] >= 0) count[v.sec_block[s]] += 1;
  });
  team.sync();
  team.for_each(n_blocks, [&](int64_t g) {  // chunk counts become offsets inside the block
    int32_t total = 0;
    for (int64_t c = 0; c < n_chunks; ++c) {
      const int32_t n = sc.chunk_counts[c * n_blocks + g];
      sc.chunk_counts[c * n_blocks + g] = total;
      total += n;
    }
    sc.block_fill[g] = total;
  });
  team.sync();
  if (team.leader()) {
    sc.block_begin[0] = 0;
    for (int32_t g = 0; g < n_blocks; ++g) sc.block_begin[g + 1] = sc.block_begin[g] + sc.block_fill[g];
  }
  team.sync();
  team.for_each(n_chunks, [&](int64_t c) {
    int32_t* offset = sc.chunk_counts + c * n_blocks;
    const int64_t end = (c + 1) * kListChunk < n_sections ? (c + 1) * kListChunk : n_sections;
    for (int64_t s = c * kListChunk; s < end; ++s) {
      const int32_t g = v.sec_block[s];
      if (g >= 0) sc.block_list[sc.block_begin[g] + offset[g]++] = int32_t(s);
    }
  });
  team.sync();
  if (v.sec_conn != nullptr) {
    team.for_each(n_blocks, [&](int64_t g) {
      heap_sort(sc.block_list + sc.block_begin[g], int64_t(sc.block_begin[g + 1] - sc.block_begin[g]),
                ConnectionKey{v.sec_conn});
    });
    team.sync();
  }
  if (team.leader()) sc.shared->lists_valid = 1;
  team.sync();
}

// ---- arena (leader only: slots are handed out in the engine's order) ----------------------------

HANAMI_STEP int64_t allocate(const TrainNet& v, int n_slots) {
  const int64_t top = v.counters[kArenaTop];
  if (top + n_slots > v.capacity) return -1;
  v.counters[kArenaTop] = top + n_slots;
  return top;
}

// Keeps "reserve >= len + 1", so that a walk adds its one slot without allocating. The gradient
// rule reserves all 63 slots at once: its synapses never move.
HANAMI_STEP void ensure_reserve(const TrainNet& v, const TrainConfig& cfg, int32_t s) {
  const int len = v.sec_len[s];
  const int cap = v.sec_cap[s];
  if (cap >= reserve_for(len, 1)) return;
  const int new_cap = cfg.gradient_rule ? kSynapsesPerSection : reserve_for(len, 1 + kGrowSlack);
  const int64_t start = allocate(v, new_cap);
  if (start < 0) {  // the next sample boundary compacts or asks the host for a larger arena
    v.counters[kNeedy] += 1;
    return;
  }
  const int64_t old = v.sec_start[s];
  if (len > 0) {
    copy_n(v.syn_weight + old, len, v.syn_weight + start);
    copy_n(v.syn_upper + old, len, v.syn_upper + start);
    copy_n(v.syn_target + old, len, v.syn_target + start);
    if (v.syn_counter) copy_n(v.syn_counter + old, len, v.syn_counter + start);
    if (v.syn_accum) copy_n(v.syn_accum + old, len, v.syn_accum + start);
    if (v.syn_pending) copy_n(v.syn_pending + old, len, v.syn_pending + start);
  }
  v.counters[kGarbage] += cap;
  v.sec_start[s] = int32_t(start);
  v.sec_cap[s] = uint8_t(new_cap);
}

// One arena array rewritten in the new order through the temp buffer (T is 4 or 1 bytes wide).
template <class Team, typename T>
HANAMI_STEP void compact_array(const Team& team, const TrainNet& v, Scratch& sc, T* array, T fill,
                               int64_t total) {
  T* temp = reinterpret_cast<T*>(sc.arena_temp);
  team.for_each(total, [&](int64_t i) { temp[i] = fill; });
  team.sync();
  team.for_each(sc.block_begin[v.n_blocks], [&](int64_t i) {
    const int32_t s = sc.block_list[i];
    copy_n(array + v.sec_start[s], int64_t(v.sec_len[s]), temp + sc.new_start[s]);
  });
  team.sync();
  team.for_each(total, [&](int64_t i) { array[i] = temp[i]; });
  team.sync();
}

// Rewrites the arena densely in processing order (blocks in order, ascending section id),
// len + slack slots per section. Returns false, changing nothing, when that does not fit.
template <class Team>
HANAMI_STEP bool compact(const Team& team, const TrainNet& v, Scratch& sc, int slack) {
  build_block_lists(team, v, sc);
  const int32_t n_live = sc.block_begin[v.n_blocks];
  if (team.leader()) {
    int64_t total = 0;
    for (int32_t i = 0; i < n_live; ++i) {
      const int32_t s = sc.block_list[i];
      sc.new_start[s] = int32_t(total);
      total += reserve_for(v.sec_len[s], slack);
    }
    sc.shared->verdict = total <= v.capacity;
    sc.shared->arena_total = total;
  }
  team.sync();
  const bool fits = sc.shared->verdict != 0;
  const int64_t total = sc.shared->arena_total;
  team.sync();  // everyone has read the verdict before anyone may write it again
  if (!fits) return false;
  compact_array(team, v, sc, v.syn_weight, 0.0f, total);
  compact_array(team, v, sc, v.syn_upper, 0.0f, total);
  compact_array(team, v, sc, v.syn_target, uint8_t(kEmptyTarget), total);
  if (v.syn_counter) compact_array(team, v, sc, v.syn_counter, uint8_t(0), total);
  if (v.syn_accum) compact_array(team, v, sc, v.syn_accum, 0.0f, total);
  if (v.syn_pending) compact_array(team, v, sc, v.syn_pending, 0.0f, total);
  team.for_each(n_live, [&](int64_t i) {
    const int32_t s = sc.block_list[i];
    v.sec_start[s] = sc.new_start[s];
    v.sec_cap[s] = uint8_t(reserve_for(v.sec_len[s], slack));
  });
  if (team.leader()) {
    v.counters[kArenaTop] = total;
    v.counters[kGarbage] = 0;
    v.counters[kNeedy] = 0;
  }
  team.sync();
  return true;
}

// Gradient rule, instead of a compaction: the sections still without their reserve get it, in
// processing order. Returns false when the arena is full.
template <class Team>
HANAMI_STEP bool reserve_waiting(const Team& team, const TrainNet& v, const TrainConfig& cfg, Scratch& sc) {
  team.sync();  // every member has read the counters that led here
  build_block_lists(team, v, sc);
  if (team.leader()) {
    v.counters[kNeedy] = 0;
    for (int32_t i = 0; i < sc.block_begin[v.n_blocks]; ++i) ensure_reserve(v, cfg, sc.block_list[i]);
  }
  team.sync();
  const bool done = v.counters[kNeedy] == 0;
  team.sync();
  return done;
}

// ---- sections (leader only) -----------------------------------------------------------------------

// Creates a section for `neuron` (spec §4.7): first free slot (or `fixed_slot`), a target brick
// from the brick's list, a target block drawn uniformly or, with receptive fields, among the
// blocks whose field holds the input pixel.
HANAMI_STEP bool create_section(const TrainNet& v, const TrainConfig& cfg, Scratch& sc, int64_t step,
                                int32_t neuron, float offset, int32_t fixed_slot) {
  const int32_t brick = brick_of_neuron(v, neuron);
  if (v.brick_kind(brick) == kOutput) return false;
  int p = fixed_slot;
  if (p < 0) {
    const uint32_t mask = in_use(v, neuron);
    for (int q = 0; q < kSectionsPerNeuron && p < 0; ++q)
      if (!(mask & (1u << q))) p = q;
  }
  if (p < 0) return false;  // all eight section slots taken
  const int32_t s = neuron * kSectionsPerNeuron + p;
  const uint32_t pick = draw(cfg.seed, kStreamSection, uint64_t(step), uint32_t(s), 0);
  const int32_t target_brick = v.brick_targets[brick * kTargetBricks + pick % kTargetBricks];
  if (target_brick < 0) return false;
  const uint32_t pick_block = draw(cfg.seed, kStreamSection, uint64_t(step), uint32_t(s), 1);
  const int32_t n_blocks = v.brick_blocks(target_brick);
  const bool field = cfg.field_rows > 0 && v.brick_kind(brick) == kInput;
  const int32_t block =
      v.brick_first_block(target_brick) +
      (field ? field_block(neuron - v.brick_start(brick), n_blocks, cfg.field_rows, cfg.field_cols,
                           cfg.field_radius, pick_block)
             : int32_t(pick_block % uint32_t(n_blocks)));
  v.sec_block[s] = block;
  sc.shared->lists_valid = 0;
  v.sec_offset[s] = offset;
  v.sec_has_next[s] = 0;
  v.sec_len[s] = 0;
  v.sec_cap[s] = 0;
  v.sec_start[s] = 0;
  v.counters[kSections] += 1;
  ensure_reserve(v, cfg, s);
  return true;
}

// The default mode's growth step: sections freed by reduction are re-created in their slots
// (ascending id), then the sample's requests in (neuron, origin) order. The freed sections are
// found by all members (one item per section), the creation is the leader's.
template <class Team>
HANAMI_STEP void create_requested_sections(const Team& team, const TrainNet& v, const TrainConfig& cfg,
                                           Scratch& sc, int64_t step) {
  const bool any_pending = sc.shared->any_pending != 0;
  if (any_pending) {
    team.for_each(int64_t(v.n_neurons) * kSectionsPerNeuron, [&](int64_t s) {
      if (v.sec_block[s] == kPendingSection) sc.recreate[team.add(&sc.shared->n_recreate, 1)] = int32_t(s);
    });
    team.sync();
  }
  if (team.leader()) {
    Shared& sh = *sc.shared;
    if (any_pending) {
      sh.any_pending = 0;
      heap_sort(sc.recreate, int64_t(sh.n_recreate), IntKey());
      for (int32_t i = 0; i < sh.n_recreate; ++i) {
        const int32_t s = sc.recreate[i];
        v.sec_block[s] = kNoSection;
        const uint8_t had_next = v.sec_has_next[s];
        if (create_section(v, cfg, sc, step, s / kSectionsPerNeuron, v.sec_offset[s], s % kSectionsPerNeuron))
          v.sec_has_next[s] = had_next;
      }
      sh.n_recreate = 0;
    }
    heap_sort(sc.requests, int64_t(sh.n_requests), RequestKey());
    for (int32_t i = 0; i < sh.n_requests; ++i)
      create_section(v, cfg, sc, step, int32_t(sc.requests[i].key >> 32), sc.requests[i].offset, -1);
    sh.n_requests = 0;
  }
  team.sync();
}

// ---- walks (one item per section) -----------------------------------------------------------------

template <class Team>
HANAMI_STEP void add_request(const Team& team, Scratch& sc, int32_t neuron, int32_t origin, float offset) {
  sc.requests[team.add(&sc.shared->n_requests, 1)] = {(int64_t(neuron) << 32) + int64_t(origin + 1), offset};
}

template <class Team>
HANAMI_STEP int32_t finish_walk(const Team& team, const TrainNet& v, Scratch& sc, int32_t s,
                                int32_t reached_slots, bool survived, float last_upper) {
  if (survived && !v.sec_has_next[s]) {
    v.sec_has_next[s] = 1;
    add_request(team, sc, s / kSectionsPerNeuron, s, chain_offset(v.sec_offset[s], last_upper, false));
  }
  return reached_slots;
}

// The synapse of an empty slot that a training walk reached (spec §4.4).
template <class Team>
HANAMI_STEP void create_synapse(const Team& team, const TrainNet& v, const TrainConfig& cfg, int64_t step,
                                int32_t s, int k, float p_above, float lower, int32_t block_neurons) {
  const int64_t base = v.sec_start[s];
  const int len = v.sec_len[s];
  const uint32_t key = uint32_t(s);
  const uint32_t pick_target = draw(cfg.seed, kStreamSynapse, uint64_t(step), key, 0);
  const uint32_t pick_weight = draw(cfg.seed, kStreamSynapse, uint64_t(step), key, 1);
  const uint32_t pick_sign = draw(cfg.seed, kStreamSynapse, uint64_t(step), key, 2);
  const float old_upper = k < len ? v.syn_upper[base + k] : lower;
  v.syn_target[base + k] = uint8_t(pick_target % uint32_t(block_neurons));
  v.syn_weight[base + k] = initial_weight(pick_weight, pick_sign, cfg.init_scale);
  v.syn_upper[base + k] = p_above;
  const float shift = p_above - old_upper;
  for (int j = k + 1; j < len; ++j) v.syn_upper[base + j] = v.syn_upper[base + j] + shift;
  if (v.syn_counter) v.syn_counter[base + k] = kCounterStart;
  if (v.syn_accum) v.syn_accum[base + k] = 0.0f;
  if (v.syn_pending) v.syn_pending[base + k] = 0.0f;
  if (k >= len) v.sec_len[s] = uint8_t(k + 1);
  team.add(&v.counters[kSynapses], int64_t(1));
}

// Training walk of one section (spec §4.3): creates, splits, stores what each reached slot adds
// to its target in slot_contrib, asks for a successor when the signal survives all 63 slots.
// Touches only section s (and the team-wide lists). Returns the number of reached slots.
template <class Team>
HANAMI_STEP int32_t walk_train(const Team& team, const TrainNet& v, const TrainConfig& cfg, Scratch& sc,
                               int64_t step, int32_t s, float potential, int32_t block_neurons) {
  const float p_above = potential - v.sec_offset[s];
  const int64_t base = v.sec_start[s];
  float* upper = v.syn_upper + base;
  float* weight = v.syn_weight + base;
  uint8_t* target = v.syn_target + base;
  float* contrib = sc.slot_contrib + base;
  const int len = v.sec_len[s];
  float lower = 0.0f;
  int k = 0;
  for (; k < len; ++k) {
    const float r = remaining(p_above, lower);
    if (!reached(r)) return finish_walk(team, v, sc, s, k, false, 0.0f);
    const uint8_t t = target[k];
    const float u = upper[k];
    const float border = u - lower;
    if (t == kEmptyTarget || r < border) {
      if (t == kEmptyTarget) {
        create_synapse(team, v, cfg, step, s, k, p_above, lower, block_neurons);
        contrib[k] = contribution(weight[k], r, upper[k] - lower);
      } else {
        float b = border;
        // the gradient rule splits only the last slot (engine.cpp: borders under trained weights)
        if (should_split(border, r, k) && !(cfg.gradient_rule && k + 1 < len)) {
          upper[k] = split_upper(lower, u);
          if (k + 1 == len) {  // the upper half becomes an empty slot with a border
            upper[k + 1] = u;
            weight[k + 1] = 0.0f;
            target[k + 1] = kEmptyTarget;
            if (v.syn_counter) v.syn_counter[base + k + 1] = 0;
            if (v.syn_accum) v.syn_accum[base + k + 1] = 0.0f;
            if (v.syn_pending) v.syn_pending[base + k + 1] = 0.0f;
            v.sec_len[s] = uint8_t(len + 1);
          }
          b = upper[k] - lower;
        }
        contrib[k] = contribution(weight[k], r, b);
      }
      if (v.sec_len[s] != len) sc.grown[team.add(&sc.shared->n_grown, 1)] = s;
      return finish_walk(team, v, sc, s, k + 1, false, 0.0f);
    }
    contrib[k] = weight[k];
    lower = u;
  }
  const float r = remaining(p_above, lower);
  if (k < kSynapsesPerSection) {
    if (!reached(r)) return finish_walk(team, v, sc, s, k, false, 0.0f);
    create_synapse(team, v, cfg, step, s, k, p_above, lower, block_neurons);
    contrib[k] = contribution(weight[k], r, upper[k] - lower);
    sc.grown[team.add(&sc.shared->n_grown, 1)] = s;
    return finish_walk(team, v, sc, s, k + 1, false, 0.0f);
  }
  return finish_walk(team, v, sc, s, k, reached(r), lower);  // all 63 slots: the chain may grow
}

// Request-mode walk of one section (Engine::walk_infer): no growth; stores what each reached slot
// adds to its target (an empty slot's entry is never summed: no neuron has its target 0xFF).
HANAMI_STEP int32_t walk_request(const TrainNet& v, Scratch& sc, int32_t s, float potential) {
  const float p_above = potential - v.sec_offset[s];
  const int64_t base = v.sec_start[s];
  const float* upper = v.syn_upper + base;
  const float* weight = v.syn_weight + base;
  float* contrib = sc.slot_contrib + base;
  const int len = v.sec_len[s];
  float lower = 0.0f;
  for (int k = 0; k < len; ++k) {
    const float r = remaining(p_above, lower);
    if (!reached(r)) return k;
    const float border = upper[k] - lower;
    if (r < border) {  // partly covered: the last reached slot
      contrib[k] = contribution(weight[k], r, border);
      return k + 1;
    }
    contrib[k] = weight[k];
    lower = upper[k];
  }
  return len;
}

// ---- phases ---------------------------------------------------------------------------------------

// Raw inputs become the input neurons' potentials; a newly firing input neuron gets its first
// sections. Returns false when those found no room and a compaction does not help.
// In request mode (learning false) only the values are set.
template <class Team>
HANAMI_STEP bool input_phase(const Team& team, const TrainNet& v, const TrainConfig& cfg, Scratch& sc,
                             int64_t step, const float* x, bool learning) {
  for (int b = 0; b < v.n_bricks; ++b) {
    if (v.brick_kind(b) != kInput) continue;
    const int32_t start = v.brick_start(b);
    const float* values = x + v.brick_io(b);
    team.for_each(v.brick_count(b), [&](int64_t i) {
      v.potential[start + i] = values[i];
      v.active[start + i] = values[i] > 0.0f;
      if (learning && values[i] > 0.0f && in_use(v, int32_t(start + i)) == 0) team.add(&sc.shared->n_create, 1);
    });
    team.sync();
    if (!learning) continue;
    if (team.leader() && sc.shared->n_create > 0) {  // first sections, in neuron order
      sc.shared->n_create = 0;
      for (int i = 0; i < v.brick_count(b); ++i)
        if (v.active[start + i] && in_use(v, start + i) == 0)
          for (int f = 0; f < cfg.input_fan_in; ++f) create_section(v, cfg, sc, step, start + i, 0.0f, -1);
    }
    team.sync();
  }
  if (!learning || v.counters[kNeedy] == 0) return true;
  return cfg.gradient_rule ? reserve_waiting(team, v, cfg, sc) : compact(team, v, sc, kCompactSlack);
}

// entry of a brick's neuron i in rows of kDeltaStride per block, counted from the brick's first block
HANAMI_STEP int64_t row_index(int64_t i) {
  return (i / kNeuronsPerBlock) * kDeltaStride + i % kNeuronsPerBlock;
}

// ---- neuron inputs: the walks' contributions sorted by target, in processing order -------------
//
// A neuron's input is the sum of its reached slots' contributions in the engine's order: the
// block's sections in list order, their slots in order, starting from 0. Rather than have every
// neuron scan all reached slots of its block (each of the output brick's neurons would scan the
// walks of the whole hidden layer), the contributions are first sorted by target neuron, keeping
// that order (a counting sort over per-visit target counts); then each neuron adds its own list.

// Walk phase, per visit: how many of its reached slots target each neuron of the block (an empty
// slot, target 0xFF, reached in request mode adds nothing).
HANAMI_STEP void count_targets(const TrainNet& v, Scratch& sc, int32_t pos) {
  int32_t* count = sc.target_rank + int64_t(pos) * kNeuronsPerBlock;
  for (int t = 0; t < kNeuronsPerBlock; ++t) count[t] = 0;
  const uint8_t* target = v.syn_target + sc.visit_start[pos];
  for (int k = 0; k < sc.visit_reached[pos]; ++k)
    if (target[k] < kNeuronsPerBlock) count[target[k]] += 1;
}

template <class Team>
HANAMI_STEP void sort_contributions(const Team& team, const TrainNet& v, Scratch& sc, int b) {
  const int32_t first_block = v.brick_first_block(b);
  const int32_t n_blocks = v.brick_blocks(b);
  // per (block, target): each visit's count becomes its first place in the target's list
  team.for_each(int64_t(n_blocks) * kNeuronsPerBlock, [&](int64_t j) {
    const int32_t g = first_block + int32_t(j / kNeuronsPerBlock);
    const int64_t t = j % kNeuronsPerBlock;
    int32_t total = 0;
    for (int32_t pos = sc.block_begin[g]; pos < sc.block_begin[g + 1]; ++pos) {
      if (sc.visit_reached[pos] == 0) continue;
      int32_t* rank = sc.target_rank + int64_t(pos) * kNeuronsPerBlock + t;
      const int32_t n = *rank;
      *rank = total;
      total += n;
    }
    sc.list_count[int64_t(g) * kNeuronsPerBlock + t] = total;
  });
  team.sync();
  // per block: where each target's list starts inside the block's part
  team.for_each(n_blocks, [&](int64_t j) {
    const int64_t g = first_block + j;
    int32_t total = 0;
    for (int t = 0; t < kNeuronsPerBlock; ++t) {
      sc.list_begin[g * kNeuronsPerBlock + t] = total;
      total += sc.list_count[g * kNeuronsPerBlock + t];
    }
    sc.block_sorted[g] = total;
  });
  team.sync();
  if (team.leader()) {  // the blocks' parts one after the other: sizes become starts
    int32_t start = 0;
    for (int32_t g = first_block; g < first_block + n_blocks; ++g) {
      const int32_t size = sc.block_sorted[g];
      sc.block_sorted[g] = start;
      start += size;
    }
  }
  team.sync();
  // per visit: its contributions to their places
  const int32_t first = sc.block_begin[first_block];
  team.for_each(sc.block_begin[first_block + n_blocks] - first, [&](int64_t j) {
    const int32_t pos = first + int32_t(j);
    const int32_t count = sc.visit_reached[pos];
    if (count == 0) return;
    const int64_t g = v.sec_block[sc.block_list[pos]];
    const int32_t* begin = sc.list_begin + g * kNeuronsPerBlock;
    int32_t* rank = sc.target_rank + int64_t(pos) * kNeuronsPerBlock;
    const uint8_t* target = v.syn_target + sc.visit_start[pos];
    const float* contrib = sc.slot_contrib + sc.visit_start[pos];
    float* sorted = sc.sorted_contrib + sc.block_sorted[g];
    for (int k = 0; k < count; ++k) {
      const uint8_t t = target[k];
      if (t < kNeuronsPerBlock) sorted[begin[t] + rank[t]++] = contrib[k];
    }
  });
  team.sync();
}

// The input of neuron i of block g: its sorted contributions added in order (loads issued eight
// at a time, so that a GPU thread waits once per eight).
HANAMI_STEP float neuron_input(const Scratch& sc, int32_t g, int32_t i) {
  const int64_t at = int64_t(g) * kNeuronsPerBlock + i;
  const float* contrib = sc.sorted_contrib + sc.block_sorted[g] + sc.list_begin[at];
  const int32_t count = sc.list_count[at];
  float sum = 0.0f;
  int32_t k = 0;
  for (; k + kScanWidth <= count; k += kScanWidth) {
    float c[kScanWidth];
    for (int j = 0; j < kScanWidth; ++j) c[j] = contrib[k + j];
    for (int j = 0; j < kScanWidth; ++j) sum = sum + c[j];
  }
  for (; k < count; ++k) sum = sum + contrib[k];
  return sum;
}

// The new value of a brick's neuron i (brick-local) from its input: the sigmoid for an output
// neuron (with its delta), hidden_step of rules.h for a hidden one, split as in engine.cpp.
// In request mode (target null) there are no deltas and no growth requests.
template <class Team>
HANAMI_STEP void update_neuron(const Team& team, const TrainNet& v, const TrainConfig& cfg, Scratch& sc,
                               int b, int32_t i, float input, const float* target, float* output) {
  const int32_t n = v.brick_start(b) + i;
  float* delta = sc.block_delta + int64_t(v.brick_first_block(b)) * kDeltaStride;
  uint8_t* positive = sc.block_positive + int64_t(v.brick_first_block(b)) * kDeltaStride;
  if (v.brick_kind(b) == kOutput) {
    const float o = output_activation(input);
    v.potential[n] = o;
    v.active[n] = 0;
    output[v.brick_io(b) + i] = o;
    if (target == nullptr) return;
    delta[row_index(i)] = output_delta(o, target[v.brick_io(b) + i]);
    if (v.syn_counter) positive[row_index(i)] = o > 0.0f;
    return;
  }
  const uint8_t shifted = uint8_t(v.refractory[n] >> 1);
  const bool let_in = shifted == 0;
  v.refractory[n] = let_in ? cfg.refractory_time : shifted;
  const float decayed = v.potential[n] / cfg.cooldown;
  const float p = let_in ? decayed + input : decayed;
  v.active[n] = p > 0.0f;
  v.potential[n] = p > 0.0f ? hidden_activation(p) : 0.0f;
  if (target == nullptr) return;
  if (v.syn_counter) positive[row_index(i)] = p > 0.0f && v.potential[n] > 0.0f;
  if (p > 0.0f && in_use(v, n) == 0) add_request(team, sc, n, -1, 0.0f);
}

// One brick's forward pass: the walks of its live sections whose source fires (one item each),
// their contributions sorted by target, then each neuron's input and new value (one item each),
// then the reserves of the sections that grew, renewed in section order (engine.cpp:
// merge_lanes). In request mode (target null) the walks do not grow.
template <class Team>
HANAMI_STEP void forward_brick(const Team& team, const TrainNet& v, const TrainConfig& cfg, Scratch& sc,
                               int64_t step, int b, const float* target, float* output) {
  const int32_t first_block = v.brick_first_block(b);
  const int32_t first = sc.block_begin[first_block];
  team.for_each(sc.block_begin[first_block + v.brick_blocks(b)] - first, [&](int64_t j) {
    const int32_t pos = first + int32_t(j);
    const int32_t s = sc.block_list[pos];
    const int32_t neuron = s / kSectionsPerNeuron;
    if (!v.active[neuron]) return;
    sc.visit_start[pos] = v.sec_start[s];  // the walk moves no slot: reserves come after the sums
    sc.visit_reached[pos] = target == nullptr
                                ? walk_request(v, sc, s, v.potential[neuron])
                                : walk_train(team, v, cfg, sc, step, s, v.potential[neuron],
                                             v.block_count(v.sec_block[s]));
    if (sc.visit_reached[pos] > 0) count_targets(v, sc, pos);
  });
  team.sync();
  sort_contributions(team, v, sc, b);
  team.for_each(int64_t(v.brick_blocks(b)) * kNeuronsPerBlock, [&](int64_t i) {
    if (i >= v.brick_count(b)) return;
    const float input = neuron_input(sc, first_block + int32_t(i / kNeuronsPerBlock),
                                     int32_t(i % kNeuronsPerBlock));
    update_neuron(team, v, cfg, sc, b, int32_t(i), input, target, output);
  });
  team.sync();
  if (target == nullptr) return;
  if (team.leader()) {
    heap_sort(sc.grown, int64_t(sc.shared->n_grown), IntKey());
    for (int32_t i = 0; i < sc.shared->n_grown; ++i) ensure_reserve(v, cfg, sc.grown[i]);
    sc.shared->n_grown = 0;
  }
  team.sync();
}

// The backward step of one reached section: reduction counters, the slot sum for its source's
// delta (16 lanes, simd.h's order) and the weight steps (or, in a batch, the pending sums).
HANAMI_STEP void backward_section(const TrainNet& v, const TrainConfig& cfg, Scratch& sc, int32_t s,
                                  int count) {
  const int32_t g = v.sec_block[s];
  const float* delta = sc.block_delta + int64_t(g) * kDeltaStride;
  const int64_t base = v.sec_start[s];
  float* weight = v.syn_weight + base;
  const uint8_t* target = v.syn_target + base;
  if (v.syn_counter) {
    uint8_t* counter = v.syn_counter + base;
    const uint8_t* positive = sc.block_positive + int64_t(g) * kDeltaStride;
    for (int k = 0; k < count; ++k) {
      const uint8_t t = target[k];
      const bool useful = positive[t] == (weight[k] > 0.0f);
      counter[k] = uint8_t(counter[k] + (t != kEmptyTarget && counter[k] < kCounterPersistent && useful));
    }
  }
  const bool source_is_input = v.brick_kind(brick_of_neuron(v, s / kSectionsPerNeuron)) == kInput;
  float lanes[kSumLanes];
  for (int i = 0; i < kSumLanes; ++i) lanes[i] = 0.0f;
  for (int k = 0; k < count; ++k) {
    const float d = delta[target[k]];
    lanes[k % kSumLanes] = lanes[k % kSumLanes] + d * weight[k];
    if (v.syn_pending)
      v.syn_pending[base + k] = v.syn_pending[base + k] + d;
    else if (v.syn_accum)
      weight[k] = adagrad_weight(weight[k], v.syn_accum + base + k, d, cfg.learning_rate);
    else
      weight[k] = updated_weight(weight[k], d, cfg.learning_rate);
  }
  if (!source_is_input || v.syn_accum) sc.slot_value[s] = lane_total(lanes);
}

// Hanami's backward rule (spec §5): bricks in reverse; a hidden brick's deltas come from its
// neurons' section sums (one item per neuron), then every section reached in the forward pass
// takes its step (one item per section).
template <class Team>
HANAMI_STEP void backward(const Team& team, const TrainNet& v, const TrainConfig& cfg, Scratch& sc) {
  for (int b = v.n_bricks - 1; b >= 0; --b) {
    const int32_t kind = v.brick_kind(b);
    if (kind == kInput) continue;
    const int32_t first_block = v.brick_first_block(b);
    if (kind == kHidden) {
      const int32_t start = v.brick_start(b);
      float* delta = sc.block_delta + int64_t(first_block) * kDeltaStride;
      team.for_each(int64_t(v.brick_blocks(b)) * kNeuronsPerBlock, [&](int64_t i) {
        const int32_t n = start + int32_t(i);
        float d = 0.0f;
        if (i < v.brick_count(b) && v.active[n]) {
          float sum = 0.0f;
          for (int p = 0; p < kSectionsPerNeuron; ++p) sum = sum + sc.slot_value[int64_t(n) * 8 + p];
          d = hidden_delta(sum, v.potential[n]);
        }
        delta[row_index(i)] = d;
      });
      team.sync();
    }
    const int32_t first = sc.block_begin[first_block];
    team.for_each(sc.block_begin[first_block + v.brick_blocks(b)] - first, [&](int64_t j) {
      const int32_t pos = first + int32_t(j);
      if (sc.visit_reached[pos] > 0) backward_section(v, cfg, sc, sc.block_list[pos], sc.visit_reached[pos]);
    });
    team.sync();
  }
}

// End of a batch: every live synapse moves once by its summed delta, which becomes 0. Sections
// the batch did not reach hold zero sums, which leave weight and Adagrad sum bit-identical.
template <class Team>
HANAMI_STEP void flush_batch(const Team& team, const TrainNet& v, const TrainConfig& cfg) {
  team.for_each(int64_t(v.n_neurons) * kSectionsPerNeuron, [&](int64_t s) {
    if (v.sec_block[s] < 0) return;
    const int64_t base = v.sec_start[s];
    for (int k = 0; k < v.sec_len[s]; ++k) {
      float* w = v.syn_weight + base + k;
      const float sum = v.syn_pending[base + k];
      *w = v.syn_accum ? adagrad_weight(*w, v.syn_accum + base + k, sum, cfg.learning_rate)
                       : updated_weight(*w, sum, cfg.learning_rate);
      v.syn_pending[base + k] = 0.0f;
    }
  });
  team.sync();
}

// Reduction (spec §5.7), the default mode's clean removal, one item per live section:
// non-persistent counters decay, a synapse at 0 is deleted (later slots move down, keeping their
// borders), a section without synapses is freed and re-created at the next growth step.
template <class Team>
HANAMI_STEP void reduce(const Team& team, const TrainNet& v, Scratch& sc) {
  build_block_lists(team, v, sc);
  team.for_each(sc.block_begin[v.n_blocks], [&](int64_t pos) {
    const int32_t s = sc.block_list[pos];
    const int64_t base = v.sec_start[s];
    float* upper = v.syn_upper + base;
    float* weight = v.syn_weight + base;
    uint8_t* target = v.syn_target + base;
    uint8_t* counter = v.syn_counter + base;
    float* accum = v.syn_accum ? v.syn_accum + base : nullptr;
    float* pending = v.syn_pending ? v.syn_pending + base : nullptr;
    int len = v.sec_len[s];
    int live = 0, deleted = 0;
    float lower = 0.0f, shift = 0.0f;
    int kept = 0;
    for (int k = 0; k < len; ++k) {
      const float u = upper[k];
      const float border = u - lower;
      lower = u;
      if (target[k] != kEmptyTarget) {
        uint8_t c = counter[k];
        if (c < kCounterPersistent) c = uint8_t(c - 1);
        if (c == 0) {
          shift = shift + border;
          ++deleted;
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
    while (len > 0 && target[len - 1] == kEmptyTarget &&
           upper[len - 1] == (len > 1 ? upper[len - 2] : 0.0f))
      --len;
    v.sec_len[s] = uint8_t(len);
    if (deleted > 0) team.add(&v.counters[kSynapses], -int64_t(deleted));
    if (live > 0) return;
    team.add(&v.counters[kGarbage], int64_t(v.sec_cap[s]));
    team.add(&v.counters[kSections], int64_t(-1));
    v.sec_len[s] = 0;
    v.sec_cap[s] = 0;
    v.sec_block[s] = kPendingSection;
    team.add(&sc.shared->n_emptied, 1);
  });
  team.sync();
  if (team.leader() && sc.shared->n_emptied > 0) {
    sc.shared->n_emptied = 0;
    sc.shared->lists_valid = 0;
    sc.shared->any_pending = 1;
  }
  team.sync();
}

// Start of a call: nothing counted, the lists to be built, and sections that reduction freed in
// an earlier call may wait for re-creation.
HANAMI_STEP void reset_shared(Scratch& sc) {
  *sc.shared = Shared{};
  sc.shared->any_pending = 1;
}

// compact_ on its own (not inside train): packs the arena with `slack` spare slots per section.
template <class Team>
HANAMI_STEP bool compact_call(const Team& team, const TrainNet& v, Scratch& sc, int slack) {
  if (team.leader()) reset_shared(sc);
  team.sync();
  return compact(team, v, sc, slack);
}

// Prepares the per-call scratch state (the engine's constructor).
template <class Team>
HANAMI_STEP void begin_call(const Team& team, const TrainNet& v, Scratch& sc) {
  team.for_each(int64_t(v.n_blocks) * kDeltaStride, [&](int64_t i) {
    sc.block_delta[i] = 0.0f;
    sc.block_positive[i] = 0;
  });
  team.for_each(int64_t(v.n_neurons) * kSectionsPerNeuron, [&](int64_t s) {
    sc.slot_value[s] = 0.0f;
    sc.visit_reached[s] = 0;
  });
  if (team.leader()) reset_shared(sc);
  team.sync();
  if (v.syn_counter)
    for (int b = 0; b < v.n_bricks; ++b)
      team.for_each(v.brick_count(b), [&](int64_t i) {
        sc.block_positive[int64_t(v.brick_first_block(b)) * kDeltaStride + row_index(i)] =
            v.potential[v.brick_start(b) + i] > 0.0f;
      });
  team.sync();
}

// End of a sample: its visits and section sums go back to 0 (no sync: the caller's next one).
template <class Team>
HANAMI_STEP void clear_visits(const Team& team, const TrainNet& v, Scratch& sc) {
  team.for_each(sc.block_begin[v.n_blocks], [&](int64_t pos) {
    if (sc.visit_reached[pos] == 0) return;
    sc.visit_reached[pos] = 0;
    sc.slot_value[sc.block_list[pos]] = 0.0f;
  });
}

// Online learning over samples [start, count), like Engine::train: one cycle each. Returns the
// first sample not done: count, or earlier when the arena must grow first (the host grows it and
// calls again from there). With syn_pending the weight steps are summed over batches of
// batch_size rows counted from row 0 (engine.h, "Batches"). Every member of the team returns the
// same value.
template <class Team>
HANAMI_STEP int64_t train(const Team& team, const TrainNet& v, const TrainConfig& cfg, Scratch& sc,
                          const float* inputs, int64_t n_inputs, const float* targets, int64_t n_outputs,
                          float* outputs, int64_t start, int64_t count, int64_t batch_size) {
  begin_call(team, v, sc);
  for (int64_t i = start; i < count; ++i) {
    // sample boundary: the only place where the arena is compacted (never with the gradient
    // rule, whose slots must not move)
    const int64_t top = v.counters[kArenaTop];
    if (cfg.gradient_rule) {
      if (v.counters[kNeedy] > 0 && !reserve_waiting(team, v, cfg, sc)) return i;
    } else if (v.counters[kNeedy] > 0 || v.counters[kGarbage] > (top / 4 > 4096 ? top / 4 : 4096)) {
      if (!compact(team, v, sc, kCompactSlack)) return i;
    }
    const int64_t step = v.counters[kStep];
    if (!input_phase(team, v, cfg, sc, step, inputs + i * n_inputs, true)) return i;
    build_block_lists(team, v, sc);
    for (int b = 0; b < v.n_bricks; ++b)
      if (v.brick_kind(b) != kInput)
        forward_brick(team, v, cfg, sc, step, b, targets + i * n_outputs, outputs + i * n_outputs);
    create_requested_sections(team, v, cfg, sc, step);
    if (!cfg.gradient_rule) backward(team, v, cfg, sc);  // the gradient rule only grows here
    clear_visits(team, v, sc);  // before any rebuild of the lists that the visits index
    if (team.leader()) v.counters[kStep] = step + 1;
    team.sync();
    if (!cfg.gradient_rule && cfg.reduction && (step + 1) % kReductionInterval == 0) reduce(team, v, sc);
    if (v.syn_pending && ((i + 1) % batch_size == 0 || i + 1 == count)) flush_batch(team, v, cfg);
  }
  return count;
}

// Request mode (predict_, like Engine::predict): forward passes over samples [0, count) in order,
// without growth or learning; neuron state carries over from sample to sample. Compat mode too,
// with net.sec_conn set.
template <class Team>
HANAMI_STEP void predict(const Team& team, const TrainNet& v, const TrainConfig& cfg, Scratch& sc,
                         const float* inputs, int64_t n_inputs, float* outputs, int64_t n_outputs,
                         int64_t count) {
  begin_call(team, v, sc);
  build_block_lists(team, v, sc);
  for (int64_t i = 0; i < count; ++i) {
    input_phase(team, v, cfg, sc, 0, inputs + i * n_inputs, false);
    for (int b = 0; b < v.n_bricks; ++b)
      if (v.brick_kind(b) != kInput) forward_brick(team, v, cfg, sc, 0, b, nullptr, outputs + i * n_outputs);
    clear_visits(team, v, sc);
    team.sync();
  }
}

}  // namespace portable
}  // namespace hanami
