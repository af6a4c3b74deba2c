"""``StructureView``: a structure or trajectory in nglview, coloured by any per-atom array.

Thin by design: it takes ``ase.Atoms`` (or a list of them) and numbers to colour by, and
shows them; it computes nothing. Long trajectories are subsampled to ``max_frames`` (nglview
fetches frames one round trip each), and systems above ``large`` atoms get a light point
representation by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np
from ase import Atoms

from nnp_lab.errors import InputError

LARGE = 10_000
N_COLOURS = 16


def _colour_bins(
    values: np.ndarray, cmap: str, vmin: float, vmax: float
) -> list[tuple[str, list[int]]]:
    """Per-atom values → up to 16 (hex colour, atom indices) groups of a matplotlib colormap."""
    import matplotlib

    cm = matplotlib.colormaps[cmap]
    span = vmax - vmin if vmax > vmin else 1.0
    bins = np.clip(((values - vmin) / span * N_COLOURS).astype(int), 0, N_COLOURS - 1)
    out = []
    for b in np.unique(bins):
        rgba = cm((b + 0.5) / N_COLOURS)
        colour = "#{:02x}{:02x}{:02x}".format(*(int(255 * c) for c in rgba[:3]))
        out.append((colour, np.flatnonzero(bins == b).tolist()))
    return out


def colour_bar_html(label: str, cmap: str, vmin: float, vmax: float) -> str:
    """A horizontal CSS gradient with the value range, for the colour scale."""
    import matplotlib

    cm = matplotlib.colormaps[cmap]
    stops = ", ".join(
        "#{:02x}{:02x}{:02x}".format(*(int(255 * c) for c in cm(x)[:3]))
        for x in np.linspace(0, 1, 8)
    )
    return (
        f'<div class="nnp-colourbar" style="font-size:11px;width:240px">{label}'
        f'<div style="height:10px;background:linear-gradient(to right, {stops})"></div>'
        f'<div style="display:flex;justify-content:space-between"><span>{vmin:.3g}</span>'
        f"<span>{vmax:.3g}</span></div></div>"
    )


def _nglview() -> Any:
    """nglview, without its import-time pkg_resources deprecation warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="pkg_resources is deprecated", category=UserWarning
        )
        import nglview
    return nglview


class StructureView(widgets.VBox):
    """nglview view of ``atoms`` (one ``Atoms`` or a trajectory) with a frame slider.

    Args:
        atoms: a structure or a list of frames (same atoms in each frame).
        color_by: per-atom values (N,) or per frame (F, N), e.g. committee force spread.
        label: name of the coloured quantity (shown on the colour bar).
        cmap: matplotlib colormap name.
        max_frames: longer trajectories are subsampled evenly to this many frames.
        representation: nglview representation; default ball+stick, or point for large systems.
    """

    def __init__(
        self,
        atoms: Atoms | Sequence[Atoms],
        color_by: Any = None,
        label: str = "",
        cmap: str = "viridis",
        max_frames: int = 500,
        representation: str | None = None,
    ):
        nglview = _nglview()
        frames = [atoms] if isinstance(atoms, Atoms) else list(atoms)
        if not frames:
            raise InputError("StructureView needs at least one structure")
        n = len(frames[0])
        if any(len(f) != n for f in frames):
            raise InputError("all frames of a trajectory must have the same number of atoms")
        if len(frames) > max_frames:
            keep = np.unique(np.linspace(0, len(frames) - 1, max_frames).round().astype(int))
        else:
            keep = np.arange(len(frames))
        self.frames = [frames[k] for k in keep]
        self.frame_index = keep
        values = None
        if color_by is not None:
            values = np.asarray(color_by, dtype=float)
            if values.ndim == 1 and values.shape[0] == n:
                values = np.broadcast_to(values, (len(frames), n))
            if values.shape != (len(frames), n):
                raise InputError(
                    f"color_by must have one value per atom ({n}) or per frame and atom "
                    f"({len(frames)}, {n}), got {values.shape}"
                )
            values = values[keep]
        self.values = values
        self.cmap = cmap
        if len(self.frames) == 1:
            self.view = nglview.show_ase(self.frames[0])
        else:
            self.view = nglview.show_asetraj(self.frames)
        self.view.clear_representations()
        self.representation = representation or ("point" if n > LARGE else "ball+stick")
        self.view.add_representation(self.representation)
        if frames[0].pbc.any():
            self.view.add_unitcell()
        children: list[Any] = [self.view]
        self.slider = None
        if len(self.frames) > 1:
            self.slider = widgets.IntSlider(
                value=0,
                min=0,
                max=len(self.frames) - 1,
                description="frame",
                continuous_update=False,
            )
            self.slider.observe(self._on_frame, names="value")
            children.append(self.slider)
        self.colour_bar = widgets.HTML()
        if values is not None:
            vmin, vmax = float(np.nanmin(values)), float(np.nanmax(values))
            self.vmin, self.vmax = vmin, vmax
            self.colour_bar.value = colour_bar_html(label, cmap, vmin, vmax)
            self._apply_colours(0)
            children.append(self.colour_bar)
        super().__init__(children)

    def _on_frame(self, change: dict[str, Any]) -> None:
        self.view.frame = int(change["new"])
        if self.values is not None:
            self._apply_colours(int(change["new"]))

    def _apply_colours(self, frame: int) -> None:
        """Colour atoms by the frame's values through an nglview selection colour scheme."""
        from nglview.color import ColormakerRegistry

        groups = _colour_bins(self.values[frame], self.cmap, self.vmin, self.vmax)
        scheme = [[colour, "@" + ",".join(map(str, idx))] for colour, idx in groups]
        name = f"nnp_lab_{id(self)}_{frame}"
        ColormakerRegistry.add_selection_scheme(name, scheme)
        self.view.clear_representations()
        self.view.add_representation(self.representation, color=name)

    @property
    def current_frame(self) -> int:
        """Index (in the original trajectory) of the frame shown."""
        return int(self.frame_index[self.slider.value if self.slider is not None else 0])
