"""Files to chunks: find them, read each type, cut them to the model's size, and write them into the store."""
