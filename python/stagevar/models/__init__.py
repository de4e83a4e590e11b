"""Model definitions that load the official checkpoints: :mod:`.infinity` (Infinity-2B/8B) and :mod:`.star`
(STAR-1.7B), each with a generation session (:mod:`.session`) that the StageVAR loop drives.

What both families share: :mod:`.common` (the plain loop, random generators, autocast, float-to-uint8 images),
:mod:`.sampling` (upstream's top-k/top-p filter) and :mod:`.checkpoint` (the strict-load report and its error)."""
