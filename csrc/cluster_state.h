// How a cluster's tensors are laid out, shared by the op registration and every backend.
//
// The Python module (hanami_torch/cluster.py) owns these tensors as buffers; the ops receive them
// as two lists in the fixed order below and never change a shape. Growth only fills preallocated
// slots; when the synapse arena is full an op stops at a sample boundary, records how far it got in
// counters[kProcessed], and Python enlarges the arena and calls again.
#pragma once

#include <cstdint>

namespace hanami {

// layout: read-only description of bricks and neuron blocks
enum LayoutIndex : int {
  kBrickInfo = 0,    // int32 [bricks, 5]: neuron_start, neuron_count, kind, io_offset, first_block
  kBrickTargets = 1, // int32 [bricks, 64]: target-brick list (-1 for output bricks)
  kBlockInfo = 2,    // int32 [blocks, 3]: brick, first_neuron, neuron_count
  kLayoutSize = 3,
};

// state: everything that learning changes
enum StateIndex : int {
  kBrickGrid = 0,    // int32 [bricks, 2]: compat mode's connection-block grid (dimX, dimY)
  kPotential = 1,    // float32 [neurons]: raw input, log2 activation or sigmoid output
  kActive = 2,       // uint8 [neurons]
  kRefractory = 3,   // uint8 [neurons]: right-shifted refractory counter
  kRequest = 4,      // float32 [neurons]: compat mode's "isNew/newOffset" (-1 = none)
  kSecBlock = 5,     // int32 [neurons*8]: global target block of section n*8+p (-1 free, -2 pending)
  kSecOffset = 6,    // float32 [neurons*8]: source potential consumed by earlier sections of the chain
  kSecHasNext = 7,   // uint8 [neurons*8]
  kSecConn = 8,      // int32 [neurons*8] in compat mode (connection block*64 + slot), else [0]
  kSecStart = 9,     // int32 [neurons*8]: first arena slot
  kSecLen = 10,      // uint8 [neurons*8]: slots in use (synapses, plus a trailing empty slot after a split)
  kSecCap = 11,      // uint8 [neurons*8]: arena slots reserved
  kSynWeight = 12,   // float32 [capacity]
  kSynUpper = 13,    // float32 [capacity]: cumulative upper end of the slot's interval
  kSynTarget = 14,   // uint8 [capacity]: neuron inside the target block, 0xFF = empty
  kSynCounter = 15,  // uint8 [capacity] when reduction is on, else [0]
  kSynAccum = 16,    // float32 [capacity] with the Adagrad optimizer (sum of squared steps), else [0]
  kCounters = 17,    // int64 [8], see CounterIndex
  kStateSize = 18,
};

enum CounterIndex : int {
  kStep = 0,       // training samples seen
  kArenaTop = 1,   // first never-used arena slot
  kGarbage = 2,    // arena slots below the top that no section owns
  kNeedy = 3,      // sections whose reserve is below len + 1 (fixed by the next compaction)
  kProcessed = 4,  // samples the last op call completed
  kSynapses = 5,   // live synapses
  kSections = 6,   // live sections
  kCountersSize = 8,
};

// config: float64 [16], written once by the Python module
enum ConfigIndex : int {
  kSeed = 0,
  kCompat = 1,
  kCooldown = 2,
  kRefractoryTime = 3,
  kReduction = 4,
  kLearningRate = 5,
  kInitScale = 6,
  kThreads = 7,
  kOptimizer = 8,     // 0: Hanami's plain SGD step, 1: per-synapse Adagrad
  kInputFanIn = 9,    // sections an input neuron opens when it first fires (Hanami: 1)
  kLearningRule = 10, // 0: Hanami's rule inside train_, 1: "gradient" (train_ only grows; weights
                      //    are learned through infer/infer_backward and a torch optimizer)
  kFieldRows = 11,    // receptive fields: rows and columns of every input brick's image (0: off,
  kFieldCols = 12,    //    sections pick their target block uniformly, as in Hanami)
  kFieldRadius = 13,  // receptive fields: half-width of a block's square field, in pixels
  kConfigSize = 16,
};

constexpr int32_t kNoSection = -1;
constexpr int32_t kPendingSection = -2;  // freed by reduction, re-created at the next growth step

}  // namespace hanami
