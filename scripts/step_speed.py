"""Training-step speed of ResNet18 by input size and memory format; a benchmark, not a test.

    python scripts/step_speed.py

Times SGD steps (forward, backward, Nesterov update, label-smoothed loss) on random batches of 256,
after one warm-up step, for 32/24/16 px inputs, channels_last and contiguous. This is what chose
the `cpu` recipe's progressive resizing (cifar/config.py).
"""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cifar.models import build_model  # noqa: E402

torch.set_num_threads(2)
m = build_model("resnet18")
opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
lossf = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
for cl in [True, False]:
    mm = m.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
    for res in [32, 24, 16]:
        for bs in [256]:
            x = torch.randn(bs, 3, res, res)
            y = torch.randint(0, 10, (bs,))
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            n = 0
            t = None
            for i in range(4):
                if i == 1:
                    t = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                loss = lossf(mm(x), y)
                loss.backward()
                opt.step()
                if i >= 1:
                    n += bs
            dt = time.perf_counter() - t
            print(f"cl={cl} res={res} bs={bs}: {n / dt:.1f} img/s", flush=True)
