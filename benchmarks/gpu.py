"""GPU benchmark: Hanami's CUDA kernels against a dense PyTorch MLP of the same parameter count.

For each template (the MNIST template 784-400-10, and a 10x larger one: 784-4000-10 with eight
sections per input neuron) the network is first grown on the CPU by online learning (``learn_many``
over MNIST-like images, see ``mnist_like``), then moved to the GPU with ``cluster.to("cuda")``.
For batch sizes 1, 64, 1024 and 16384 the script then measures, in samples per second:

* ``hanami_gpu_infer``: ``torch.ops.hanami.infer`` on the GPU (every sample from rest);
* ``hanami_gpu_gradient_train``: batched gradient training on the GPU: ``ops.infer`` with the
  weights as a parameter, MSE loss, ``backward()`` (``infer_backward``) and an SGD step;
* ``hanami_cpu_infer``: the same ``infer`` op on the CPU (all cores), for reference;
* ``mlp_gpu_infer`` / ``mlp_gpu_train``: an MLP 784-h-10 (ReLU) on the GPU whose parameter count
  equals the grown network's synapse count, forward only / forward, cross-entropy, backward and an
  SGD step.

``cpu_online_learn`` is the CPU's rate while growing the network. Then ``--online`` further
samples are learned online (Hanami's rule, batch 1, growth included) by a copy on the CPU
(``cpu_online_learn_more``) and a copy on the GPU (``gpu_online_learn_more``: the portable train
step on one thread block), each after 20 untimed warm-up samples.

Every timed loop is bracketed by ``torch.cuda.synchronize()``, after two untimed warm-up calls,
and runs for at least ``--seconds`` (default 0.3 s). The data are synthetic (MNIST is not needed):
784 pixels 0..255, about 19% lit, in 10 classes.

    python benchmarks/gpu.py --json bench-results/gpu.json

JSON written by ``--json``::

    {"device", "torch", "cuda", "machine", "grow_samples", "seconds",
     "templates": [{"name", "neurons", "synapses", "sections", "mlp_hidden", "mlp_parameters",
                    "cpu_online_learn", "cpu_online_learn_more", "gpu_online_learn_more": samples/s,
                    "batches": [{"batch", "hanami_gpu_infer", "hanami_gpu_gradient_train",
                                 "hanami_cpu_infer", "mlp_gpu_infer", "mlp_gpu_train"}, ...]}]}
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from torch import nn

from hanami_torch import HanamiCluster, ops, templates

# benchmarks/_common.py: importable because Python puts the script's folder on sys.path.
from _common import machine_description, write_json

#: untimed samples learned online before each timed online run (first kernel launch, allocator)
WARM_UP = 20

TEMPLATES = {
    "mnist": (templates.MNIST, {}),
    "mnist-10x": (templates.mnist(4000), {"input_fan_in": 8}),
}


def mnist_like(rows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images shaped like MNIST's (784 pixels 0..255, about 19% lit) in 10 classes: each class
    lights a random blob of pixels, each sample is a noisy copy of its class's blob. Returns raw
    pixels [rows, 784] and labels [rows]."""
    g = torch.Generator().manual_seed(seed)
    blobs = torch.rand(10, 784, generator=torch.Generator().manual_seed(12345)) < 0.19
    labels = torch.randint(0, 10, (rows,), generator=g)
    flips = torch.rand(rows, 784, generator=g) < 0.05
    lit = blobs[labels] ^ flips
    pixels = torch.where(lit, torch.randint(1, 256, (rows, 784), generator=g).float(), torch.zeros(()))
    return pixels, labels


def rate(step, batch: int, seconds: float, gpu: bool) -> float:
    """Samples per second of step() (one batch per call), timed over at least `seconds`."""
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    for _ in range(2):  # warm-up: kernels loaded, allocator primed
        step()
    sync()
    start = time.perf_counter()
    step()
    sync()
    once = time.perf_counter() - start
    iterations = max(1, min(10_000, int(seconds / max(once, 1e-6))))
    sync()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    sync()
    elapsed = time.perf_counter() - start
    return batch * iterations / elapsed


def mlp_of(parameters: int, device) -> tuple[nn.Module, int]:
    """MLP 784-h-10 with biases whose parameter count is closest to `parameters`."""
    hidden = max(1, round((parameters - 10) / (784 + 1 + 10)))
    model = nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10)).to(device)
    return model, hidden


def bench_template(name: str, args) -> dict:
    text, options = TEMPLATES[name]
    cluster = HanamiCluster(text, seed=0, **options)
    pixels, labels = mnist_like(args.grow, seed=0)
    targets = nn.functional.one_hot(labels, 10).float()
    start = time.perf_counter()
    cluster.learn_many(pixels, targets)
    online = args.grow / (time.perf_counter() - start)
    stats = cluster.stats()
    gpu = copy.deepcopy(cluster).to("cuda")
    model, hidden = mlp_of(stats["synapses"], "cuda")
    row = {
        "name": name,
        "neurons": int(cluster.potential.numel()),
        "synapses": stats["synapses"],
        "sections": stats["sections"],
        "mlp_hidden": hidden,
        "mlp_parameters": sum(p.numel() for p in model.parameters()),
        "cpu_online_learn": online,
        "batches": [],
    }
    print(f"{name}: {row['neurons']} neurons, {row['synapses']:,} synapses, {row['sections']:,} sections "
          f"(grown on the CPU from {args.grow} samples at {online:,.0f} samples/s); "
          f"MLP 784-{hidden}-10 with {row['mlp_parameters']:,} parameters", flush=True)
    # Hanami's online learning (batch 1, growth included) of further samples, on the CPU and on
    # the GPU (the portable train step on one thread block; see docs/gpu.md), after a warm-up
    more, more_labels = mnist_like(args.online + WARM_UP, seed=1)
    more_targets = nn.functional.one_hot(more_labels, 10).float()
    learner = copy.deepcopy(cluster)
    learner.learn_many(more[:WARM_UP], more_targets[:WARM_UP])
    start = time.perf_counter()
    learner.learn_many(more[WARM_UP:], more_targets[WARM_UP:])
    row["cpu_online_learn_more"] = args.online / (time.perf_counter() - start)
    learner = copy.deepcopy(gpu)
    more_gpu, more_targets_gpu = more.cuda(), more_targets.cuda()
    learner.learn_many(more_gpu[:WARM_UP], more_targets_gpu[:WARM_UP])
    torch.cuda.synchronize()
    start = time.perf_counter()
    learner.learn_many(more_gpu[WARM_UP:], more_targets_gpu[WARM_UP:])
    torch.cuda.synchronize()
    row["gpu_online_learn_more"] = args.online / (time.perf_counter() - start)
    print(f"online learning of {args.online} more samples (batch 1): CPU {row['cpu_online_learn_more']:,.0f} "
          f"samples/s, GPU {row['gpu_online_learn_more']:,.0f} samples/s", flush=True)
    print(f"{'batch':>6} {'GPU infer':>12} {'GPU grad-train':>15} {'CPU infer':>12} {'MLP infer':>12} "
          f"{'MLP train':>12}   [samples/s]", flush=True)
    layout, state, config, n_out = gpu._layout(), gpu._state(), gpu.config, gpu.n_outputs
    cpu_layout, cpu_state, cpu_config = cluster._layout(), cluster._state(), cluster.config
    for batch in args.batches:
        x_cpu, y_labels = mnist_like(batch, seed=batch)
        x = x_cpu.cuda()
        y = nn.functional.one_hot(y_labels, 10).float().cuda()
        labels_gpu = y_labels.cuda()
        result = {"batch": batch}

        with torch.no_grad():
            result["hanami_gpu_infer"] = rate(
                lambda: torch.ops.hanami.infer(layout, state, config, x, gpu.syn_weight, n_out), batch,
                args.seconds, True)
            result["hanami_cpu_infer"] = rate(
                lambda: torch.ops.hanami.infer(cpu_layout, cpu_state, cpu_config, x_cpu, cluster.syn_weight, n_out),
                batch, args.seconds, False)

        weights = gpu.syn_weight.clone().requires_grad_(True)
        hanami_optimizer = torch.optim.SGD([weights], lr=0.01)

        def hanami_step():
            out = ops.infer(layout, state, config, x, weights, n_out)
            loss = nn.functional.mse_loss(out, y)
            hanami_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            hanami_optimizer.step()

        result["hanami_gpu_gradient_train"] = rate(hanami_step, batch, args.seconds, True)

        inputs = x / 255.0
        with torch.no_grad():
            result["mlp_gpu_infer"] = rate(lambda: model(inputs), batch, args.seconds, True)
        mlp_optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

        def mlp_step():
            loss = nn.functional.cross_entropy(model(inputs), labels_gpu)
            mlp_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            mlp_optimizer.step()

        result["mlp_gpu_train"] = rate(mlp_step, batch, args.seconds, True)
        row["batches"].append(result)
        print(f"{batch:>6} {result['hanami_gpu_infer']:>12,.0f} {result['hanami_gpu_gradient_train']:>15,.0f} "
              f"{result['hanami_cpu_infer']:>12,.0f} {result['mlp_gpu_infer']:>12,.0f} "
              f"{result['mlp_gpu_train']:>12,.0f}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grow", type=int, default=6000,
                        help="MNIST-like samples the networks learn on the CPU before the GPU runs (default 6000)")
    parser.add_argument("--online", type=int, default=3000,
                        help="further samples learned online (batch 1) on the CPU and on the GPU (default 3000)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024, 16384],
                        help="batch sizes (default 1 64 1024 16384)")
    parser.add_argument("--templates", nargs="+", choices=sorted(TEMPLATES), default=list(TEMPLATES),
                        help="templates to run (default: all)")
    parser.add_argument("--seconds", type=float, default=0.3, help="least time per timed loop (default 0.3)")
    parser.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py needs a CUDA device (torch.cuda.is_available() is False)")
    if not torch._C._dispatch_has_kernel_for_dispatch_key("hanami::infer", "CUDA"):
        raise SystemExit("hanami_torch was built without CUDA kernels: rebuild with HANAMI_CUDA=1 (docs/gpu.md)")
    if args.grow < 1 or args.online < 1 or any(b < 1 for b in args.batches) or args.seconds <= 0:
        raise SystemExit("--grow, --online and --batches must be >= 1 and --seconds > 0")

    device = torch.cuda.get_device_name()
    print(f"device: {device}; torch {torch.__version__} (CUDA {torch.version.cuda}), "
          f"{torch.get_num_threads()} CPU threads; {machine_description()}", flush=True)
    results = {
        "device": device,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "machine": machine_description(),
        "cpu_threads": torch.get_num_threads(),
        "grow_samples": args.grow,
        "seconds": args.seconds,
        "templates": [bench_template(name, args) for name in args.templates],
    }
    write_json(args.json, results)


if __name__ == "__main__":
    main()
