"""Data: list files, TSN segment sampling, PaddleVideo-exact transforms, frame sources, dataset and loader.

Submodules (import them directly; this package imports nothing heavy so ``tsn --help`` stays fast):
``lists`` (read_list, read_label_names, write_list), ``sampling`` (segment_indices), ``transforms``
(TrainTransform, TestTransform and the single transforms), ``video`` (open_source), ``views`` (test_clip),
``dataset`` (TSNDataset, build_loader; imports paddle, so import it only where data is loaded).
"""
