"""The progress counter's stopping rule, shared by every decoder loop (torch and onnxruntime).

The decoder emits a counter running 0 → 1 (i/T at frame i of T). A unit ends at the first frame
whose counter reaches 1 to the nearest frame: counter ≥ 1, or counter + half the model's own last
counter increment ≥ 1 (a regression lands on 0.995 as often as on 1.005; rounding to the nearest
frame, by the model's own rate, stops it there instead of letting it run on past its end).
Uses only the model's own outputs, never a reference counter or length.
"""

from __future__ import annotations


def reached_end(counter, previous):
    """Elementwise over arrays or tensors of the current and previous counters (previous 0 at the start)."""
    return (counter >= 1.0) | (counter + 0.5 * (counter - previous) >= 1.0)
