"""Model definitions that load the official checkpoints: :mod:`.infinity` (Infinity-2B/8B) and :mod:`.star`
(STAR-1.7B), each with a generation session (:mod:`.session`) that the StageVAR loop drives."""
