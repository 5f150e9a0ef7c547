"""Draw the figures of docs/concept.md as small, reproducible SVG files.

    .venv/bin/python docs/figures/draw_figures.py            # writes docs/figures/*.svg
    .venv/bin/python docs/figures/draw_figures.py --png /tmp  # also PNG copies, for a quick look

Text stays text in the SVGs (no glyph outlines) and the files carry no date, so running the script
again gives byte-identical files unless a drawing changed. Only matplotlib is needed.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, Polygon, Rectangle  # noqa: E402

HERE = Path(__file__).resolve().parent

plt.rcParams.update(
    {
        "svg.fonttype": "none",  # keep text as <text>: much smaller files
        "svg.hashsalt": "hanami-docs",  # stable element ids
        "font.family": "DejaVu Sans",
        "font.size": 9,
        "axes.titlesize": 10,
    }
)

# colours
INPUT = "#4c9be8"
HIDDEN = "#f0a340"
OUTPUT = "#5cb85c"
FORWARD = "#d9534f"
GREY = "#b8b8b8"
LIGHT = "#eeeeee"
SYNAPSE_COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]


# ---- hexagons --------------------------------------------------------------------------------

HEX_R = 1 / math.sqrt(3)  # circumradius: neighbouring centres in a row are 1 apart


def hex_centre(x: int, y: int) -> tuple[float, float]:
    """Centre of grid cell (x, y): odd rows shifted by +1/2, y drawn downwards."""
    return x + 0.5 * (y % 2), -y * 1.5 * HEX_R


def hexagon(ax, x, y, face="white", edge=GREY, lw=1.0, ls="-", alpha=1.0, zorder=1):
    cx, cy = hex_centre(x, y)
    corners = [
        (cx + HEX_R * math.cos(math.radians(90 + 60 * k)), cy + HEX_R * math.sin(math.radians(90 + 60 * k)))
        for k in range(6)
    ]
    ax.add_patch(Polygon(corners, closed=True, facecolor=face, edgecolor=edge, lw=lw, ls=ls,
                         alpha=alpha, zorder=zorder))
    return cx, cy


# Neighbour offsets (dx, dy, dz) for a brick in an even row (docs/template_format.md).
EVEN_ROW_SIDES = {
    0: (-1, -1, -1), 1: (0, -1, -1), 2: (0, 0, -1),
    3: (0, -1, 0), 4: (1, 0, 0), 5: (0, 1, 0),
    6: (-1, -1, 0), 7: (-1, 0, 0), 8: (-1, 1, 0),
    9: (0, 0, 1), 10: (-1, 1, 1), 11: (0, 1, 1),
}
FORWARD_SIDES = (9, 3, 1, 4, 11, 5, 2)


def draw_blocks(ax, cx, cy, n_blocks, colour):
    """Small squares inside a brick: one per neuron block of 64."""
    per_row = min(n_blocks, 5)
    rows = math.ceil(n_blocks / per_row)
    size, gap = 0.085, 0.025
    width = per_row * size + (per_row - 1) * gap
    height = rows * size + (rows - 1) * gap
    for i in range(n_blocks):
        r, c = divmod(i, per_row)
        x0 = cx - width / 2 + c * (size + gap)
        y0 = cy + height / 2 - (r + 1) * size - r * gap - 0.05
        ax.add_patch(Rectangle((x0, y0), size, size, facecolor=colour, edgecolor="black", lw=0.4, zorder=3))


def figure_hex_grid(out: Path) -> plt.Figure:
    fig = plt.figure(figsize=(8.0, 6.4))
    grid = fig.add_gridspec(2, 3, height_ratios=[1.5, 1.0], hspace=0.12, wspace=0.05,
                            top=0.95, bottom=0.1, left=0.02, right=0.98)

    # -- top: the MNIST template on the grid
    ax = fig.add_subplot(grid[0, :])
    for y in range(0, 3):
        for x in range(0, 5):
            hexagon(ax, x, y, face="white", edge=LIGHT)
    bricks = [
        ((1, 1), "input brick\n'test_input'\n784 neurons", 13, INPUT),
        ((2, 1), "hidden brick\n400 neurons", 7, HIDDEN),
        ((3, 1), "output brick\n'test_output'\n10 neurons", 1, OUTPUT),
    ]
    centres = []
    for (x, y), label, blocks, colour in bricks:
        cx, cy = hexagon(ax, x, y, face=colour, edge="black", lw=1.2, alpha=0.35, zorder=2)
        hexagon(ax, x, y, face="none", edge="black", lw=1.2, zorder=2)
        draw_blocks(ax, cx, cy, blocks, colour)
        ax.text(cx, cy + 0.3, f"{x},{y},1", ha="center", va="center", fontsize=8, zorder=4)
        ax.text(cx, cy - 0.6, label, ha="center", va="top", fontsize=7.5,
                bbox=dict(boxstyle="round,pad=0.1", facecolor="white", edgecolor="none"))
        centres.append((cx, cy))
    for (x0, y0), (x1, y1) in zip(centres, centres[1:]):
        ax.add_patch(FancyArrowPatch((x0 + 0.1, y0 + 0.42), (x1 - 0.1, y1 + 0.42), arrowstyle="-|>",
                                     connectionstyle="arc3,rad=-0.6", mutation_scale=12, color=FORWARD,
                                     lw=1.6, zorder=5))
    ax.text(-0.5, 0.55, "one plane (z = 1) of the hex grid;\nodd rows are shifted by half a hexagon",
            ha="left", va="bottom", fontsize=8, color="#555555")
    ax.text(4.7, -1.3,
            "squares = neuron blocks of 64\n(784 → 13, 400 → 7, 10 → 1)\n\n"
            "red arrows: each brick's 64\ntarget bricks (here all = the\nnext brick, distance 1)",
            ha="left", va="center", fontsize=8, color="#333333")
    ax.set_xlim(-0.6, 6.6)
    ax.set_ylim(-2.45, 1.05)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title("(a) bricks on the hex grid: input → hidden → output (the MNIST template)")

    # -- bottom: the 12 neighbours of a brick X in an even row, plane by plane
    planes = [(-1, "plane z − 1 (below)"), (0, "plane z (the brick's own)"), (1, "plane z + 1 (above)")]
    for column, (dz, title) in enumerate(planes):
        ax = fig.add_subplot(grid[1, column])
        x0, y0 = 2, 2
        for y in range(1, 4):
            for x in range(1, 4):
                hexagon(ax, x, y, face="white", edge=LIGHT)
        for side, (dx, dy, sz) in EVEN_ROW_SIDES.items():
            if sz != dz:
                continue
            colour = FORWARD if side in FORWARD_SIDES else GREY
            cx, cy = hexagon(ax, x0 + dx, y0 + dy, face=colour, edge="black", alpha=0.45, zorder=2)
            ax.text(cx, cy, str(side), ha="center", va="center", fontsize=10, weight="bold", zorder=4)
        if dz == 0:
            cx, cy = hexagon(ax, x0, y0, face=HIDDEN, edge="black", lw=1.4, alpha=0.6, zorder=2)
            ax.text(cx, cy, "X", ha="center", va="center", fontsize=11, weight="bold", zorder=4)
        else:
            hexagon(ax, x0, y0, face="none", edge="black", lw=1.2, ls="--", zorder=3)
        ax.set_title(title, fontsize=9)
        ax.set_xlim(0.4, 4.1)
        ax.set_ylim(-3.75, -0.45)
        ax.set_aspect("equal")
        ax.axis("off")
    fig.text(0.5, 0.05,
             "the 12 sides of a brick X (even row y): 6 in its plane, 3 below, 3 above; side 11 − s is opposite side s.\n"
             "Red: the 7 'forward' sides a target-brick walk may take (+x in the plane, or to z ± 1). "
             "Dashed: X's own position in the other plane.",
             ha="center", va="center", fontsize=8)
    return save(fig, out / "hex_grid.svg")


# ---- the section walk --------------------------------------------------------------------------


def figure_section_walk(out: Path) -> plt.Figure:
    uppers = [40.0, 70.0, 95.0, 130.0, 190.0, 230.0]  # cumulative upper ends of the slots
    targets = [6, 21, 13, 35, 47, 60]  # target neuron of each synapse inside the 64-neuron block
    potential = 170.0
    lowers = [0.0] + uppers[:-1]

    fig = plt.figure(figsize=(8.0, 6.4))
    grid = fig.add_gridspec(2, 1, height_ratios=[1.35, 1.0], hspace=0.25, top=0.95, bottom=0.08,
                            left=0.09, right=0.97)
    ax = fig.add_subplot(grid[0])
    bar_y, bar_h = 2.0, 0.5
    for k, (lo, hi) in enumerate(zip(lowers, uppers)):
        r = potential - lo
        colour = SYNAPSE_COLOURS[k]
        if r <= 0.01:  # not reached
            ax.add_patch(Rectangle((lo, bar_y), hi - lo, bar_h, facecolor=LIGHT, edgecolor="black", lw=0.8))
            state = "not reached"
        elif r < hi - lo:  # the partly covered, last reached synapse
            ax.add_patch(Rectangle((lo, bar_y), hi - lo, bar_h, facecolor="white", edgecolor="black", lw=0.8))
            ax.add_patch(Rectangle((lo, bar_y), r, bar_h, facecolor=colour, alpha=0.45, hatch="////",
                                   edgecolor="black", lw=0.8))
            state = f"w{sub(k)}·{r:g}/{hi - lo:g}"
        else:
            ax.add_patch(Rectangle((lo, bar_y), hi - lo, bar_h, facecolor=colour, alpha=0.75,
                                   edgecolor="black", lw=0.8))
            state = f"w{sub(k)}"
        mid = (lo + hi) / 2
        ax.text(mid, bar_y + bar_h / 2, f"b{sub(k)}={hi - lo:g}", ha="center", va="center", fontsize=7.5)
        ax.text(mid, bar_y + bar_h + 0.12, f"R{sub(k)}={r:g}", ha="center", va="bottom", fontsize=7.5,
                color="black" if r > 0.01 else "#888888")
        # route to the target neuron
        nx = 8 + targets[k] * (222 / 63)
        reached_k = r > 0.01
        ax.add_patch(FancyArrowPatch((mid, bar_y - 0.02), (nx, 0.62), arrowstyle="-|>", mutation_scale=9,
                                     color=colour if reached_k else "#bbbbbb", lw=1.3,
                                     ls="-" if reached_k else ":", zorder=2))
        ax.text(mid, bar_y - 0.28, state, ha="center", va="center",
                fontsize=8, color=colour if reached_k else "#888888",
                bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none"), zorder=3)
    # the source value
    ax.annotate("", xy=(potential, bar_y + bar_h + 0.75), xytext=(0, bar_y + bar_h + 0.75),
                arrowprops=dict(arrowstyle="|-|", color="black", lw=1.2, shrinkA=0, shrinkB=0))
    ax.text(potential / 2, bar_y + bar_h + 0.87, f"source value above the section's offset: P − offset = {potential:g}",
            ha="center", va="bottom", fontsize=8.5)
    ax.plot([potential, potential], [bar_y - 0.1, bar_y + bar_h + 0.75], color="black", lw=1.0, ls="--")
    # the 64-neuron target block (one marker definition, reused: keeps the SVG small)
    xs = [8 + n * (222 / 63) for n in range(64)]
    faces = ["#444444" if n in targets else "white" for n in range(64)]
    ax.scatter(xs, [0.45] * 64, s=22, c=faces, edgecolors="#666666", linewidths=0.5, zorder=3)
    ax.text(119, 0.2, "one target block: 64 neurons of one brick (every synapse of the section points here)",
            ha="center", va="top", fontsize=8)
    ax.set_xlim(-4, 236)
    ax.set_ylim(-0.35, 4.1)
    ax.axis("off")
    ax.set_title("(b) a section walk: slots consume the source value interval by interval")

    # -- bottom: the same section as a code of the source value
    ax = fig.add_subplot(grid[1])
    xs = [i * 0.5 for i in range(0, 501)]
    for k, (lo, hi) in enumerate(zip(lowers, uppers)):
        ys = [0.0 if v - lo <= 0.01 else min(1.0, (v - lo) / (hi - lo)) for v in xs]
        ax.plot(xs, ys, color=SYNAPSE_COLOURS[k], lw=1.6)
        ax.text((lo + hi) / 2 - 4, 0.55, f"k={k}", color=SYNAPSE_COLOURS[k], ha="right", va="center", fontsize=8)
        value = 0.0 if potential - lo <= 0.01 else min(1.0, (potential - lo) / (hi - lo))
        ax.plot([potential], [value], "o", color=SYNAPSE_COLOURS[k], ms=5)
    ax.axvline(potential, color="black", ls="--", lw=1.0)
    ax.text(potential + 3, 1.05, f"P − offset = {potential:g}: code (1, 1, 1, 1, 0.67, 0)", fontsize=8, va="bottom")
    ax.set_xlim(0, 250)
    ax.set_ylim(-0.05, 1.18)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlabel("source value above the section's offset")
    ax.set_ylabel("share of the weight added")
    ax.set_title("the same section as a learned thermometer code: synapse k adds w_k · min(1, R_k / b_k) once R_k > 0.01",
                 fontsize=9)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return save(fig, out / "section_walk.svg")


def sub(k: int) -> str:
    return "".join("₀₁₂₃₄₅₆₇₈₉"[int(d)] for d in str(k))


# ---- the worked split example -----------------------------------------------------------------


def figure_split_example(out: Path) -> plt.Figure:
    # (value, slots after the step as (lower, upper, synapse index or None = empty), contribution, note)
    steps = [
        (255, [(0, 255, 0)], "w₀", "slot 0 is empty: synapse 0 is created with border b₀ = R = 255"),
        (128, [(0, 255, 0)], "w₀ · 128/255", "b₀ = 255 ≤ 2 · 128: no split; synapse 0 is partly covered"),
        (100, [(0, 127.5, 0), (127.5, 255, None)], "w₀ · 100/127.5",
         "b₀ = 255 > 2 · 100: split; slot 0 keeps [0, 127.5), empty slot 1 gets [127.5, 255)"),
        (255, [(0, 127.5, 0), (127.5, 255, 1)], "w₀ + w₁",
         "synapse 0 full; R₁ = 127.5 reaches empty slot 1: synapse 1 created with b₁ = 127.5"),
    ]
    fig, axes = plt.subplots(len(steps), 1, figsize=(8.0, 5.0), sharex=True)
    for row, (ax, (value, slots, contribution, note)) in enumerate(zip(axes, steps)):
        for lo, hi, synapse in slots:
            if synapse is None:
                ax.add_patch(Rectangle((lo, 0.15), hi - lo, 0.5, facecolor="white", edgecolor="#aaaaaa",
                                       hatch="xx", lw=0.8))
                ax.add_patch(Rectangle((lo, 0.15), hi - lo, 0.5, facecolor="none", edgecolor="black", lw=0.8))
                ax.text((lo + hi) / 2, 0.4, "empty slot 1 (border only)", ha="center", va="center", fontsize=7.5,
                        bbox=dict(boxstyle="round,pad=0.1", facecolor="white", edgecolor="none"))
            else:
                ax.add_patch(Rectangle((lo, 0.15), hi - lo, 0.5, facecolor=SYNAPSE_COLOURS[synapse], alpha=0.3,
                                       edgecolor="black", lw=0.8))
                covered = min(hi, value) - lo
                if covered > 0:
                    ax.add_patch(Rectangle((lo, 0.15), covered, 0.5, facecolor=SYNAPSE_COLOURS[synapse],
                                           alpha=0.75, edgecolor="black", lw=0.8))
                ax.text(lo + 3, 0.4, f"synapse {synapse}: [{lo:g}, {hi:g})", ha="left", va="center",
                        fontsize=7.5, color="white" if covered >= hi - lo else "black")
        ax.plot([value, value], [0.05, 0.8], color="black", lw=1.4)
        ax.plot([value], [0.8], marker="v", color="black", ms=6)
        ax.text(-8, 0.4, f"sample {row + 1}\nP = {value}", ha="right", va="center", fontsize=8.5)
        ax.text(268, 0.4, f"adds {contribution}", ha="left", va="center", fontsize=8.5)
        ax.text(0, 0.9, note, ha="left", va="bottom", fontsize=7.8, color="#333333")
        ax.set_ylim(0, 1.25)
        ax.set_xlim(0, 262)
        ax.set_yticks([])
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
    axes[-1].set_xticks([0, 100, 127.5, 255], ["0", "100", "127.5", "255"])
    axes[-1].set_xlabel("source value (one pixel), first section, offset 0")
    fig.suptitle("(c) the worked example: one pixel sees 255, 128, 100, 255", fontsize=10)
    fig.subplots_adjust(left=0.12, right=0.8, top=0.9, bottom=0.11, hspace=0.45)
    return save(fig, out / "split_example.svg")


# ---- main -------------------------------------------------------------------------------------


def save(fig: plt.Figure, path: Path) -> plt.Figure:
    fig.savefig(path, format="svg", metadata={"Date": None, "Creator": None})
    # matplotlib names only the font it measured with; let viewers without it fall back to a sans
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("font-family: 'DejaVu Sans'", "font-family: 'DejaVu Sans', Verdana, sans-serif"),
                    encoding="utf-8")
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the SVG files (default: this folder)")
    parser.add_argument("--png", type=Path, default=None, help="also write PNG copies into this folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for draw in (figure_hex_grid, figure_section_walk, figure_split_example):
        fig = draw(args.out)
        if args.png is not None:
            args.png.mkdir(parents=True, exist_ok=True)
            name = draw.__name__.removeprefix("figure_") + ".png"
            fig.savefig(args.png / name, dpi=110)
        plt.close(fig)


if __name__ == "__main__":
    main()
