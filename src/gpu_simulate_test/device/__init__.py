"""The measuring device as a shared resource: which device a run measures on (:mod:`.identity`), whether anything
else used it meanwhile (:mod:`.busy`), and one measurement at a time on it (:mod:`.lock`).

real-bench's measured run and vidur-profile's build both go through these, so a busy host or a second measurement
shows in every artifact that was measured, never only in some."""
