"""What extraction, datasets and inference share about faces: detection, alignment, selection, masks."""
