// Schemas of the hanami ops. Backends register their kernels with TORCH_LIBRARY_IMPL
// (csrc/cpu/ops_cpu.cpp, later csrc/cuda/). The layout/state tensor lists are described in
// cluster_state.h; Python wraps every op in hanami_torch/ops.py.
#include <Python.h>
#include <torch/library.h>

// An importable, otherwise empty module: importing hanami_torch._C runs the registrations below.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}

TORCH_LIBRARY(hanami, m) {
  // Online learning over inputs[start:]; stops early (see state counters) when the arena must grow.
  // `pending` is empty (online: every sample moves the weights) or float32 [capacity]: each
  // synapse's summed delta, applied at the end of every batch_size rows counted from row 0 and
  // after the last row (see "Batches" in csrc/cpu/engine.h). It must start at zero and travel
  // with the arena when Python grows it between calls of one batch; on return the sum of every
  // live synapse is 0 again (slots that no section owns may keep stale values).
  m.def(
      "train_(Tensor[] layout, Tensor(a!)[] state, Tensor config, Tensor inputs, Tensor targets, "
      "Tensor(b!) outputs, int start, Tensor(c!) pending, int batch_size) -> ()");
  // Test-only: train_ and predict_ through the portable step that the GPU runs (csrc/portable/train_step.h).
  m.def("train_portable_(Tensor[] layout, Tensor(a!)[] state, Tensor config, Tensor inputs, Tensor targets, Tensor(b!) outputs, int start, Tensor(c!) pending, int batch_size, int schedule=0) -> ()");
  m.def("predict_portable_(Tensor[] layout, Tensor(a!)[] state, Tensor config, Tensor inputs, Tensor(b!) outputs, int schedule=0) -> ()");
  // Request mode: forward passes in order, without growth; neuron state carries over.
  m.def(
      "predict_(Tensor[] layout, Tensor(a!)[] state, Tensor config, Tensor inputs, "
      "Tensor(b!) outputs) -> ()");
  // Rewrites the synapse arena densely with `slack` spare slots per section (counters[kProcessed]
  // becomes 1, or 0 when that does not fit and nothing changed).
  m.def("compact_(Tensor[] layout, Tensor(a!)[] state, Tensor config, int slack) -> ()");
  // Value codes of adaptive bricks (rules.h, "value codes"): codes[r, c] is values[r, c] coded with
  // neuron c's range; with `learn`, the rows are learned in order and `ranges` [n, 3] (count, lo,
  // hi) moves. `targets`: the values are targets of output neurons (zero is a value, target code).
  // Raw neurons (modes[c] == 0) pass their values through. `trail` is empty or [rows, n, 3]: each
  // value's range before its row (the outputs of a learned row are decoded with it).
  m.def("encode_(Tensor modes, Tensor(a!) ranges, Tensor values, Tensor(b!) codes, Tensor(c!) trail, bool learn, "
        "bool targets) -> ()");
  // Pure input codes (nothing learned) and their derivatives d code / d value, for inference.
  m.def("encode(Tensor modes, Tensor ranges, Tensor values) -> (Tensor, Tensor)");
  // Outputs of adaptive output neurons read back in their targets' units (raw ones as they are),
  // and the derivatives d decoded / d output. `ranges` is [n, 3], or a trail [rows, n, 3] of encode_.
  m.def("decode(Tensor modes, Tensor ranges, Tensor outputs) -> (Tensor, Tensor)");
  // Pure, batched inference: nothing is grown or changed, every sample starts from rest (no
  // spiking carry-over), and `weights` stands in for state[syn_weight] so that autograd can
  // differentiate with respect to it. Returns (outputs [B, n_outputs], potentials [B, neurons]):
  // the value of every neuron for every sample (raw input, log2 activation or 0, sigmoid output),
  // which infer_backward needs. `n_outputs` (the output neurons of all output bricks) is passed
  // because brick sizes are data, and fake kernels need the output shape from metadata alone.
  m.def(
      "infer(Tensor[] layout, Tensor[] state, Tensor config, Tensor inputs, Tensor weights, "
      "int n_outputs) -> (Tensor, Tensor)");
  // The true gradient of infer (walk cut-offs aside): (grad_inputs [B, n_inputs], grad_weights
  // [capacity], summed over the batch).
  m.def(
      "infer_backward(Tensor[] layout, Tensor[] state, Tensor config, Tensor inputs, "
      "Tensor weights, Tensor potentials, Tensor grad_outputs) -> (Tensor, Tensor)");
}
