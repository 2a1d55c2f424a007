"""Workers: dramatiq actors, tool plugins (workers/tools/) and runners (workers/runners/)."""
