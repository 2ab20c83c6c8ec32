"""Reports: the document model, what a run and a bundle report show, and their figures."""
