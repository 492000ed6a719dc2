"""TSN model. Paddle-free: the block plan, depth checks and checkpoint architecture (arch.py), the parameter/FLOPs
report (flops.py) and safe checkpoint I/O (checkpoint.py). Importing paddle: the ResNet backbones (resnet.py) and
the TSN network (tsn.py); import those only where a model is built, so ``tsn --help`` stays fast."""
