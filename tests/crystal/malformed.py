"""A corpus of malformed crystal files, written by the tests themselves.

``write_corpus(folder)`` writes one file per case and returns ``[(file name, expected reason
substring, extra CLI args)]``. Each file holds one bad entry (CSV cases also hold one good row
so the counts are checked: the good row must stay good).
"""

from __future__ import annotations

import gzip
from pathlib import Path

CELL = """data_{name}
_symmetry_space_group_name_H-M   'P 1'
_cell_length_a   {a}
_cell_length_b   {b}
_cell_length_c   {c}
_cell_angle_alpha   90
_cell_angle_beta   90
_cell_angle_gamma   90
_symmetry_Int_Tables_number   1
loop_
 _symmetry_equiv_pos_site_id
 _symmetry_equiv_pos_as_xyz
  1  'x, y, z'
loop_
 _atom_site_type_symbol
 _atom_site_label
 _atom_site_symmetry_multiplicity
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_occupancy
{sites}
"""

NACL_SITES = "  Na Na0 1 0 0 0 1\n  Cl Cl1 1 0.5 0.5 0.5 1"


def cif(sites: str = NACL_SITES, a="4.0", b="4.0", c="4.0", name="x") -> str:
    return CELL.format(name=name, a=a, b=b, c=c, sites=sites)


GOOD = cif(name="NaCl")


def csv_text(rows: list[tuple[str, str, str]], header="material_id,band_gap,cif") -> str:
    out = [header]
    for mid, gap, text in rows:
        out.append(f'{mid},{gap},"{text}"')
    return "\n".join(out) + "\n"


def xyz_frame(info: str, lines: list[str], lattice: str | None = "4 0 0 0 4 0 0 0 4") -> str:
    lat = f'Lattice="{lattice}" ' if lattice else ""
    return f"{len(lines)}\n{lat}Properties=species:S:1:pos:R:3 {info}\n" + "\n".join(lines) + "\n"


NACL_XYZ = ["Na 0 0 0", "Cl 2 2 2"]


def write_corpus(folder: Path) -> list[tuple[str, str, list[str]]]:
    """Write the malformed corpus into ``folder``; return (file, reason substring, args)."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[tuple[str, str | bytes, str, list[str]]] = [
        ("syntax.cif", "this is not\na CIF file at all\n", "not a CIF", []),
        ("broken_numbers.cif", cif(a="abc"), "CIF does not parse", []),
        ("no_sites.cif", cif(sites=""), "no atom sites", []),
        (
            "unknown_element.cif",
            cif("  Xx Xx0 1 0 0 0 1\n  Cl Cl1 1 .5 .5 .5 1"),
            "unknown element",
            [],
        ),
        (
            "z_too_big.cif",
            cif("  Am Am0 1 0 0 0 1\n  Cl Cl1 1 .5 .5 .5 1"),
            "unsupported element Am",
            [],
        ),
        ("zero_volume.cif", cif(a="0.0"), "zero cell volume", []),
        ("tiny_volume.cif", cif(a="0.1", b="1", c="1"), "near-zero cell volume", []),
        (
            "close_atoms.cif",
            cif("  Na Na0 1 0 0 0 1\n  Na Na1 1 0.05 0 0 1\n  Cl Cl1 1 .5 .5 .5 1"),
            "apart (< 0.5",
            [],
        ),
        (
            "close_image.cif",
            cif("  Fe Fe0 1 0 0 0 1", a="0.4", b="4", c="4"),
            "own periodic image",
            [],
        ),
        ("too_many.cif", GOOD, "atoms per cell > max_atoms=1", ["--max-atoms", "1"]),
        ("nan_lattice.cif", cif(a="nan"), "NaN or inf in the lattice", []),
        (
            "nan_coords.cif",
            cif("  Na Na0 1 nan 0 0 1\n  Cl Cl1 1 .5 .5 .5 1"),
            "NaN or inf in the atomic coordinates",
            [],
        ),
        (
            "inf_coords.cif",
            cif("  Na Na0 1 0 inf 0 1\n  Cl Cl1 1 .5 .5 .5 1"),
            "NaN or inf in the atomic coordinates",
            [],
        ),
        (
            "partial.cif",
            cif("  Na Na0 1 0 0 0 0.5\n  Cl Cl1 1 .5 .5 .5 1"),
            "partial occupancies",
            [],
        ),
        (
            "overfull_site.cif",
            cif("  Na Na0 1 0 0 0 1\n  K K0 1 0 0 0 1\n  Cl Cl1 1 .5 .5 .5 1"),
            "Occupancy",
            [],
        ),
        (
            "zero_occupancy.cif",
            cif("  Na Na0 1 0 0 0 0\n  Cl Cl1 1 .5 .5 .5 1"),
            "site Na0 has occupancy 0",
            [],
        ),
        (
            "negative_occupancy.cif",
            cif("  Na Na0 1 0 0 0 -1\n  Cl Cl1 1 .5 .5 .5 1"),
            "site Na0 has occupancy -1",
            [],
        ),
        (
            "impossible_angles.cif",
            cif().replace("alpha   90", "alpha   200"),
            "invalid cell angles",
            [],
        ),
        ("zero_angle.cif", cif().replace("alpha   90", "alpha   0"), "invalid cell angles", []),
        ("empty.cif", "", "empty file", []),
        ("blank.csv", "\n  \n", "empty file", []),
        ("binary.cif", bytes(range(256)) * 8, "binary content", []),
        (
            "latin1.csv",
            ('material_id,cif\nmp-1,"' + GOOD + '# caf\u00e9\n"\n').encode("latin-1"),
            "not UTF-8",
            [],
        ),
        ("badgzip.csv.gz", b"\x1f\x8b\x08\x00garbage-not-deflate", "not a valid gzip", []),
        ("notgzip.csv.gz", b"material_id,cif\n", "not gzip-compressed", []),
        (
            "no_cif_column.csv",
            "material_id,band_gap\nmp-1,1.0\n",
            "missing required column 'cif'",
            [],
        ),
        ("header_only.csv", "material_id,band_gap,cif\n", "no data rows", []),
        (
            "nan_label.csv",
            csv_text([("mp-1", "1.0", GOOD), ("mp-2", "nan", GOOD)]),
            "NaN in property band_gap",
            [],
        ),
        (
            "inf_label.csv",
            csv_text([("mp-1", "1.0", GOOD), ("mp-2", "inf", GOOD)]),
            "inf in property band_gap",
            [],
        ),
        (
            "text_label.csv",
            csv_text([(f"mp-{i}", "1.0", GOOD) for i in range(12)] + [("mp-x", "abc", GOOD)]),
            "non-numeric value 'abc' in property band_gap",
            [],
        ),
        (
            "duplicate_ids.csv",
            csv_text([("mp-1", "1.0", GOOD), ("mp-1", "2.0", GOOD)]),
            "duplicate id 'mp-1'",
            [],
        ),
        (
            "ragged_row.csv",
            csv_text([("mp-1", "1.0", GOOD)]) + "mp-2,1.0\n",
            "has 2 fields, header has 3",
            [],
        ),
        (
            "bad_cif_row.csv",
            csv_text([("mp-1", "1.0", GOOD), ("mp-2", "1.0", "garbage")]),
            "row 2 (mp-2)",
            [],
        ),
        (
            "empty_cif_field.csv",
            'material_id,cif\nmp-1,"' + GOOD + '"\nmp-2,\n',
            "empty cif field",
            [],
        ),
        (
            "nonperiodic.extxyz",
            xyz_frame("material_id=ok", NACL_XYZ) + xyz_frame("material_id=mol", NACL_XYZ, None),
            "not periodic",
            [],
        ),
        (
            "xyz_slab.extxyz",
            xyz_frame("material_id=ok", NACL_XYZ)
            + xyz_frame('pbc="T T F" material_id=s', NACL_XYZ),
            "not periodic in 3D (pbc=T T F)",
            [],
        ),
        (
            "xyz_unknown.extxyz",
            xyz_frame("material_id=ok", NACL_XYZ) + xyz_frame("material_id=u", ["Qq 0 0 0"]),
            "unknown element",
            [],
        ),
        (
            "xyz_truncated.extxyz",
            xyz_frame("material_id=ok", NACL_XYZ) + '5\nLattice="4 0 0 0 4 0 0 0 4"\nNa 0 0 0\n',
            "truncated frame",
            [],
        ),
        (
            "xyz_left_handed.extxyz",
            xyz_frame("material_id=ok", NACL_XYZ)
            + xyz_frame("material_id=lh", NACL_XYZ, "4 0 0 0 4 0 0 0 -4"),
            "negative cell volume",
            [],
        ),
        (
            "xyz_nan.extxyz",
            xyz_frame("material_id=ok", NACL_XYZ) + xyz_frame("material_id=n", ["Na nan 0 0"]),
            "NaN or inf in the atomic coordinates",
            [],
        ),
        ("xyz_garbage.extxyz", "three\nnot a frame\n", "expected an atom count", []),
        ("mystery.dat", "just some words\n", "unrecognised format", []),
    ]
    out = []
    for name, content, reason, args in cases:
        p = folder / name
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
        out.append((name, reason, args))
    # a gzip'd CSV with one bad row (the .csv.gz path must work end to end)
    gz = folder / "gz_bad_row.csv.gz"
    gz.write_bytes(gzip.compress(csv_text([("mp-1", "1.0", GOOD), ("mp-2", "1", "junk")]).encode()))
    out.append((gz.name, "row 2 (mp-2)", []))
    return out
