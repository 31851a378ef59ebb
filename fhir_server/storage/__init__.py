"""Storage engines behind one async contract (`base.Storage`)."""
