"""Hydrogen-bond energetics: dimer data, the NNP, energy maps, liquid water."""
