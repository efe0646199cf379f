"""Training of the lesion segmentation model (``train`` extra: torch; not used at run time)."""
