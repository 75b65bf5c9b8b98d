"""Process-wide settings that must be in place before mxnet is imported."""
import os

# Importing mxnet sets the OpenMP thread count of the whole process (torch included) to half the
# cores unless OMP_NUM_THREADS is set; use all of them instead.
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
