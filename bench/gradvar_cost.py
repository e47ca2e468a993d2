"""Cost of per-sample σ² on the MNIST-1D MLP, as a multiple of one plain mean-reduced backward.

    python bench/gradvar_cost.py [--n 3600] [--hidden 100 100] [--repeats 20] [--probe [--parts]]

Prints the ratio for the nn.Linear norm trick (target: at most 2×) and for the vmap(grad(...))
fallback; --probe also times one full checkpoint probe with the default m list and K, and --parts
splits it, per m, into the draws' permutations, their mini-batch gradients (the factor products and
gathers) and the statistics the probe records of them (optbench.gradvar.error_moments), medians of
--repeats rounds, in the process set-up of a probe job (optbench.jobs.setup_job).
"""
import argparse
import statistics
import time

import torch
from torch.nn import functional as F

from optbench.gradvar import (default_batch_sizes, error_moments, fresh_permutations, gradient_stats,
                              minibatch_errors, probe_checkpoint)
from optbench.jobs import setup_job
from optbench.model import make_mlp

LIMIT = 2.0


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up: allocator, autograd graph caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3600, help="samples (MNIST-1D training set: 3600)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[100, 100], help="MLP hidden widths")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--probe", action="store_true", help="also time one checkpoint probe (K=200, default m)")
    parser.add_argument("--parts", action="store_true", help="with --probe: the probe's time per m, in parts")
    args = parser.parse_args()
    setup_job(args.threads, "cpu")
    torch.manual_seed(0)
    # Random MNIST-1D-shaped data: the cost does not depend on the values.
    x, y = torch.randn(args.n, 40), torch.randint(0, 10, (args.n,))
    model = make_mlp(40, args.hidden).eval()
    params = list(model.parameters())

    def plain():
        torch.autograd.grad(F.cross_entropy(model(x), y), params)

    base = median_seconds(plain, args.repeats)
    fast = median_seconds(lambda: gradient_stats(model, x, y, chunk_size=args.n), args.repeats)
    vmap = median_seconds(lambda: gradient_stats(model, x, y, chunk_size=args.n, use_linear_identity=False),
                          max(3, args.repeats // 5))
    print(f"MLP 40→{'→'.join(map(str, args.hidden))}→10, n = {args.n}, {args.threads} thread(s)")
    print(f"plain mean-reduced backward   {base * 1e3:8.2f} ms   1.00×")
    print(f"σ² by the Linear norm trick   {fast * 1e3:8.2f} ms   {fast / base:.2f}×  (limit {LIMIT:.1f}×: "
          f"{'ok' if fast / base <= LIMIT else 'OVER'})")
    print(f"σ² by vmap(grad(...))         {vmap * 1e3:8.2f} ms   {vmap / base:.2f}×")
    if args.probe:
        sizes = default_batch_sizes(args.n)
        seconds = median_seconds(lambda: probe_checkpoint(model, x, y, sizes, 200, [0]), 1)
        print(f"one checkpoint probe (K = 200, m = {sizes})   {seconds:.2f} s")
        if args.parts:
            probe_parts(model, x, y, sizes, 200, args.repeats)


def probe_parts(model, x, y, sizes: list[int], draws: int, repeats: int) -> None:
    """Per m, median ms of: the K permutations alone (fresh_permutations, as minibatch_errors draws them), the
    K errors e_k (minibatch_errors: permutations, gathers, factor products, float64 matrix) and the
    statistics of them (error_moments); the factor backward once (gradient_stats) above them."""
    gradient = gradient_stats(model, x, y, keep_factors=True)
    full = gradient.flat_grad()
    stats_ms = 1e3 * median_seconds(lambda: gradient_stats(model, x, y, keep_factors=True), repeats)
    print(f"\nthe probe in parts (ms, median of {repeats}): gradient_stats with factors {stats_ms:.1f}")
    print("| m | permutations | errors (permutations included) | statistics |")
    print("| ---: | ---: | ---: | ---: |")
    totals = [0.0, 0.0, 0.0]
    for m in sizes:
        def permutations():
            return fresh_permutations(len(x), draws, torch.Generator().manual_seed(m))

        def errors():
            return minibatch_errors(model, x, y, full, m, draws, torch.Generator().manual_seed(m),
                                    factors=gradient.factors)

        sample = errors()
        parts = [1e3 * median_seconds(f, repeats) for f in (permutations, errors,
                                                             lambda: error_moments(sample, len(x), m))]
        totals = [t + p for t, p in zip(totals, parts)]
        print(f"| {m} | {parts[0]:.1f} | {parts[1]:.1f} | {parts[2]:.1f} |")
    print(f"| all | {totals[0]:.0f} | {totals[1]:.0f} | {totals[2]:.0f} |")


if __name__ == "__main__":
    main()
