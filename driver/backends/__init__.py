"""Device backends, one file each (see `gemmstone.driver.backend.Backend`)."""
