"""The named choices of a training run, kept free of torch so the CLI can offer them without it."""

# full stage's losses over time: both from the first step, or Zhang et al. 2017's order
SCHEDULES = ("joint", "paper")
# full stage's regression loss: Huber on ab, squared error in sRGB (rgb_loss.py), or their sum
LOSSES = ("huber", "rgb", "huber+rgb")
