"""Numbers and names several layers share, each in one place (no imports: config, data, prepare and the
benchmarks all read them cheaply)."""

# ImageNet RGB statistics of the 0..1 pixel scale: PaddleVideo's Normalization for TSN, and what every
# pretrained ResNet here expects.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# PaddleVideo's MultiScaleCrop scales for TSN training (crop side = short side x scale).
CROP_SCALES = (1.0, 0.875, 0.75, 0.66)

# Frame file names in a frame folder: 1-based, PaddleVideo's `img_00001.jpg` ...
FRAME_TEMPLATE = "img_{:05}.jpg"
