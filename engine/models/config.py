"""Model sizes. The default is small enough to run under 250 ms at 256x256 on a
2-core CPU; `full` is the SIGGRAPH17 width for machines with a GPU."""

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class NetConfig:
    name: str = "small"
    width: int = 16  # channels of the first block; SIGGRAPH17 uses 64
    mid_convs: int = 2  # convs in each 1/8-resolution block (SIGGRAPH17: 3)

    def channels(self):
        w = self.width
        return {"c1": w, "c2": 2 * w, "c3": 4 * w, "c4": 8 * w, "c8": 4 * w, "c9": 2 * w, "c10": 2 * w}

    def to_dict(self):
        return asdict(self)


CONFIGS = {
    "small": NetConfig("small", width=16, mid_convs=2),
    "medium": NetConfig("medium", width=32, mid_convs=2),
    "full": NetConfig("full", width=64, mid_convs=3),
}
