"""Reading image metadata (EXIF) and writing it back losslessly and atomically."""
