"""The Slurm check: a real Slurm cluster of two nodes on this machine (Debian's slurm-wlm and munge) runs the
job scripts that the docs show (deploy/slurm/) and checks what the docs say of them (`make slurm-check`)."""
