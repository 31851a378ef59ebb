"""Remote patient monitoring (RPM): pure domain computations, no I/O."""
