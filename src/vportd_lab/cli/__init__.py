"""vportctl's lab commands (`lab`, `demo`, `bench`): their options, help texts and handlers."""
