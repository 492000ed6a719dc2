"""TSN model: ResNet backbones (resnet.py), the TSN network (tsn.py), safe checkpoint I/O (checkpoint.py) and
the parameter/FLOPs report (flops.py). Nothing here imports paddle at import time."""
