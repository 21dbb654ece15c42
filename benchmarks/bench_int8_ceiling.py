"""How much int8 can speed up convolutions on this CPU: the ceiling behind `bench_onnx.py`'s ratio.

`bench_onnx.py` measures the whole R-50 network (int8 ONNX Runtime vs float32
``torch.jit.optimize_for_inference``); this script strips it down to what int8 accelerates: a stack
of ResNet-50-like 3x3 and 1x1 convolutions (256 channels at stride 4 of a 360x640 frame, the
shape where R-50 spends most of its time), run four ways in one process:

- ``torch fp32``: ``torch.jit.optimize_for_inference`` (oneDNN), today's CPU path;
- ``torch int8``: PyTorch's own static quantization (FX graph mode, the ``x86`` engine: FBGEMM /
  oneDNN int8 kernels), calibrated on random inputs;
- ``ort fp32`` / ``ort int8``: ONNX Runtime on the exported stack, and its static QDQ quantization
  (per-channel weights, as `streamvis.export.quantize` does).

It prints the CPU's SIMD flags (an int8 dot product instruction, AVX-512 VNNI / AVX-VNNI, is what
lets int8 go well past 2x of float32 FMA; without it AVX2 multiplies int8 pairs with
``vpmaddubsw`` + ``vpmaddwd``, about twice the float32 FMA rate at best) and the median time per
run of each variant with its speed-up over ``torch fp32``.

    python benchmarks/bench_int8_ceiling.py [--threads 2] [--repeat 7] [--blocks 4]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown (no /proc/cpuinfo)"
    fields = {}  # the last CPU's ("key\t\t: value" lines)
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    flags, model = fields.get("flags", "").split(), fields.get("model name", "?")
    shown = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return f"{model}; {' '.join(shown) or 'none of avx2/avx512/vnni'}"


class ConvStack(nn.Module):
    def __init__(self, blocks: int, channels: int = 256):
        super().__init__()
        layers = []
        for _ in range(blocks):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                       nn.Conv2d(channels, channels, 1), nn.ReLU()]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


def median_seconds(run, repeat: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--blocks", type=int, default=4)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ConvStack(args.blocks).eval()
    x = torch.randn(1, 256, 90, 160)  # stride 4 of 360x640
    calibration = [torch.randn_like(x) for _ in range(4)]
    results = {}
    with torch.no_grad():
        fp32 = torch.jit.optimize_for_inference(torch.jit.script(model))
        results["torch fp32 (optimize_for_inference)"] = median_seconds(lambda: fp32(x), args.repeat)
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the FX flow's deprecation notice (it still works)
            torch.backends.quantized.engine = "x86"
            prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), (x,))
            for batch in calibration:
                prepared(batch)
            int8 = convert_fx(prepared)
        results["torch int8 (FX, x86 engine)"] = median_seconds(lambda: int8(x), args.repeat)
    try:
        import onnxruntime as ort
        from onnxruntime import quantization as q
    except ImportError:
        print("onnxruntime is not installed: the ort rows are skipped (pip install 'streamvis[onnx]')")
    else:
        logging.getLogger().setLevel(logging.ERROR)  # quantize_static's "consider pre-processing" advice
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            float_path, int8_path = Path(tmp) / "stack.onnx", Path(tmp) / "stack_int8.onnx"
            torch.onnx.export(model, (x,), str(float_path), input_names=["x"], output_names=["y"],
                              opset_version=17, dynamo=False)

            class Reader(q.CalibrationDataReader):
                def __init__(self):
                    self.items = iter([{"x": b.numpy()} for b in calibration])

                def get_next(self):
                    return next(self.items, None)

            q.quantize_static(str(float_path), str(int8_path), Reader(), quant_format=q.QuantFormat.QDQ,
                              per_channel=True, activation_type=q.QuantType.QUInt8,
                              weight_type=q.QuantType.QInt8)
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            feed = {"x": x.numpy()}
            for name, path in (("ort fp32", float_path), ("ort int8 (QDQ, per-channel)", int8_path)):
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                results[name] = median_seconds(lambda s=session: s.run(None, feed), args.repeat)
    base = results["torch fp32 (optimize_for_inference)"]
    print(f"CPU: {cpu_flags()}; {args.threads} threads; {args.blocks} blocks of 3x3 + 1x1 convs, "
          f"256 channels, 90x160 (stride 4 of 360x640); median of {args.repeat}")
    for name, seconds in results.items():
        print(f"  {name:<36} {seconds * 1000:8.1f} ms   {base / seconds:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
