"""Kinetic isotope effects from path-integral simulations."""
