// The CPU engine: one Hanami cycle per sample over raw pointers into the cluster's tensors.
#pragma once

#include <cstdint>
#include <vector>

#include "../cluster_state.h"
#include "../rules.h"

namespace hanami {

struct Config {
  uint64_t seed = 0;
  bool compat = false;
  float cooldown = 1e9f;
  uint8_t refractory_time = 1;
  bool reduction = false;
  float learning_rate = 0.05f;
  double init_scale = 0.2;
  int threads = 1;
  bool adagrad = false;   // per-synapse Adagrad instead of plain SGD (syn_accum holds the sums)
  int input_fan_in = 1;   // sections an input neuron opens when it first fires
  int field_rows = 0;     // receptive fields (rules.h: field_block); 0: target blocks are uniform
  int field_cols = 0;
  float field_radius = 0.0f;
  bool gradient_rule = false;  // learning_rule="gradient": train_ grows only, autograd learns
};

// Raw views of the tensors (see cluster_state.h for the meaning of each).
struct ClusterView {
  int n_bricks = 0;
  int n_neurons = 0;
  int n_blocks = 0;
  const int32_t* brick_info = nullptr;
  const int32_t* brick_targets = nullptr;
  const int32_t* block_info = nullptr;

  int32_t* brick_grid = nullptr;
  float* potential = nullptr;
  uint8_t* active = nullptr;
  uint8_t* refractory = nullptr;
  float* request = nullptr;
  int32_t* sec_block = nullptr;
  float* sec_offset = nullptr;
  uint8_t* sec_has_next = nullptr;
  int32_t* sec_conn = nullptr;
  int32_t* sec_start = nullptr;
  uint8_t* sec_len = nullptr;
  uint8_t* sec_cap = nullptr;
  float* syn_weight = nullptr;
  float* syn_upper = nullptr;
  uint8_t* syn_target = nullptr;
  uint8_t* syn_counter = nullptr;  // null when reduction is off
  float* syn_accum = nullptr;      // null without Adagrad
  float* syn_pending = nullptr;    // batches: summed deltas of the current batch; null online
  int64_t capacity = 0;
  int64_t* counters = nullptr;

  int32_t brick_start(int b) const { return brick_info[b * 5 + 0]; }
  int32_t brick_count(int b) const { return brick_info[b * 5 + 1]; }
  int32_t brick_kind(int b) const { return brick_info[b * 5 + 2]; }
  int32_t brick_io(int b) const { return brick_info[b * 5 + 3]; }
  int32_t brick_first_block(int b) const { return brick_info[b * 5 + 4]; }
  int32_t brick_blocks(int b) const {
    return (brick_count(b) + kNeuronsPerBlock - 1) / kNeuronsPerBlock;
  }
  int32_t block_brick(int g) const { return block_info[g * 3 + 0]; }
  int32_t block_first_neuron(int g) const { return block_info[g * 3 + 1]; }
  int32_t block_count(int g) const { return block_info[g * 3 + 2]; }
};

// One reached section of the current sample, kept for the backward pass.
struct Visit {
  int32_t section;
  int32_t reached;  // slots 0..reached-1 were reached by the walk
};

// A request for a new section, collected during the forward pass (default mode).
struct SectionRequest {
  int32_t neuron;
  int32_t origin;  // section whose signal survived (-1: first section of a newly active neuron)
  float offset;
};

// Deltas are kept in rows of 256 per neuron block, so that any u8 target, including the empty
// marker 0xFF, indexes a valid (zero) entry.
constexpr int kDeltaStride = 256;

// What one thread of a team collects while it walks its share of a brick's blocks; merged in
// member order afterwards, so the result never depends on the number of threads.
struct alignas(128) Lane {
  std::vector<std::vector<Visit>> visits;          // [bricks]: reached sections, for backward
  std::vector<SectionRequest> requests;            // default mode: successor requests
  std::vector<std::pair<int32_t, float>> flags;    // compat mode: request-flag writes, in order
  std::vector<int32_t> grown;                      // sections whose length grew
  std::vector<int32_t> active_sections;            // scratch: sections of active sources
  int64_t synapses_created = 0;
};

class Team;

// Batches (learn_many(batch_size=B); a CUDA backend must implement the same semantics):
//
// Samples still run one full cycle each, in row order, and the forward pass with its growth
// (walks, new synapses and sections, splits, chain extension, reduction every 100 steps) is the
// online one. Only the weight step of Hanami's rule is deferred:
//  * the backward pass adds each reached synapse's delta (the delta of its target neuron) to the
//    synapse's pending sum in syn_pending instead of moving the weight; the pending sums are
//    float32, start at +0 and are added in sample order;
//  * everything that reads weights inside a batch (forward contributions, the hidden neurons'
//    slot sums, reduction's usefulness counts) sees them as they were at the start of the batch;
//    a synapse created inside the batch has its initial weight;
//  * at the end of each run of B samples, counted from row 0 of the op's inputs, and after the
//    last row, every synapse moves once by its summed delta S (after that sample's reduction, if
//    any): SGD w = w - lr * S; Adagrad accum = accum + S * S, w = w - lr * S / (sqrt(accum) +
//    eps), i.e. adagrad_weight with S. Then S = 0. A sum of one delta is that delta, so B = 1 is
//    online learning;
//  * pending sums move with their synapses (arena relocation, compaction, reduction); a new
//    synapse or slot starts at 0; a synapse that reduction deletes loses its sum.
// syn_pending is null for online learning (B = 1 without it takes the plain, vectorised update).
// The op may stop early for a full arena in the middle of a batch: the sums stay in syn_pending,
// which Python carries into the larger arena, and the call from `start` continues the same batch.
class Engine {
 public:
  Engine(const ClusterView& view, const Config& config);

  // Online learning over samples [start, count): one cycle each. Returns the index of the first
  // sample not done: == count, or earlier when the synapse arena must grow first. With
  // syn_pending the weight steps are summed over batches of `batch_size` rows (see above).
  int64_t train(const float* inputs, int64_t n_inputs, const float* targets, int64_t n_outputs,
                float* outputs, int64_t start, int64_t count, int64_t batch_size = 1);

  // Request mode: forward passes without growth; neuron state carries over like in Hanami.
  void predict(const float* inputs, int64_t n_inputs, float* outputs, int64_t n_outputs,
               int64_t count);

  // Rewrites the arena densely in processing order, reserving len + slack slots per section.
  // Returns false (and changes nothing) when that does not fit into the capacity.
  bool compact(int slack);

  // Gradient rule: gives the sections that wait for their reserve all 63 slots. Returns false
  // (the rest keep waiting) when the arena is full.
  bool reserve_waiting();

 private:
  // sample phases
  bool input_phase(const float* x, bool training);
  void forward_brick(int brick, bool training, Team* team);
  void forward_blocks(int brick, int first, int last, bool training, Lane& lane);
  void merge_lanes();
  void backward_visits(int brick, const Visit* first, const Visit* last);
  // blocks [first, last) of `brick` that team member `member` of `members` works on
  void share_of(int brick, int member, int members, int* first, int* last) const;
  void update_neurons(int brick, bool training, const float* target, float* output);
  void create_requested_sections();
  void backward(Team* team);
  void reduce();
  // batches: remembers the sections whose slots may hold pending sums; applies them all
  void mark_for_batch(int32_t section);
  void flush_batch();

  // sections
  int32_t neuron_brick(int32_t neuron) const { return neuron_brick_[neuron]; }
  bool create_section(int32_t neuron, float offset, int32_t fixed_slot = -1);
  void insert_into_block_list(int32_t section);
  void remove_from_block_list(int32_t section);
  void free_section(int32_t section);
  void ensure_reserve(int32_t section);
  int64_t allocate(int n_slots);

  // walks
  int32_t walk_train(Lane& lane, int32_t section, float potential, float* block_input,
                     int32_t block_neurons);
  int32_t finish_walk(Lane& lane, int32_t section, int32_t reached_slots, bool survived,
                      float last_upper = 0.0f);
  void walk_infer(int32_t section, float potential, float* block_input) const;
  int32_t create_synapse(Lane& lane, int32_t section, int slot, float potential_above_offset,
                         float lower, int32_t block_neurons);

  // compat mode's connection-block grid (spec §4.7)
  int32_t find_free_connection(int32_t brick, uint32_t random) const;
  void resize_grid(int32_t brick);
  void rebuild_grid(int32_t brick);

  // delta of neuron i of the brick whose first block is first_block
  float* delta_of(int32_t first_block, int32_t i) {
    return block_delta_.data() + size_t(first_block + i / kNeuronsPerBlock) * kDeltaStride +
           i % kNeuronsPerBlock;
  }

  uint8_t* positive_of(int32_t first_block, int32_t i) {
    return block_positive_.data() + size_t(first_block + i / kNeuronsPerBlock) * kDeltaStride +
           i % kNeuronsPerBlock;
  }

  ClusterView v_;
  Config cfg_;
  int64_t step_ = 0;  // training step of the current sample (key of its random draws)

  std::vector<int32_t> neuron_brick_;               // [neurons]
  std::vector<uint8_t> in_use_;                     // [neurons] occupied section slots (bitmask)
  std::vector<std::vector<int32_t>> block_sections_;  // [blocks] live sections, processing order
  std::vector<float> block_input_;                  // [blocks*64] padded input accumulators
  std::vector<float> block_delta_;                  // [blocks*256] padded deltas
  std::vector<uint8_t> block_positive_;             // [blocks*256] potential > 0 (reduction only)
  std::vector<float> slot_value_;                   // [neurons*8] per-section backward sums
  std::vector<std::vector<int32_t>> active_hidden_;   // [bricks] neurons that fired this sample
  std::vector<float> scratch_values_;               // inputs and results of the batched math
  std::vector<Lane> lanes_;                         // [team members]
  std::vector<SectionRequest> requests_;            // default mode
  std::vector<int32_t> request_candidates_;         // compat mode: neurons whose flag may be set
  std::vector<int32_t> pending_sections_;           // default mode: freed by reduction
  std::vector<std::vector<uint64_t>> connection_use_;  // compat: [bricks][connection blocks]
  std::vector<uint8_t> batch_marked_;               // batches: [neurons*8] section is in the list
  std::vector<int32_t> batch_sections_;             // batches: sections with pending sums
};

}  // namespace hanami
