"""Unit constants, in one place. Internal units: eV, Å, eV/Å, eV/Å³, fs, K."""

BOHR = 0.52917721067  # Å per Bohr (the factor the mlearn benchmark used with n2p2)
HARTREE = 1.0 / 0.0367493254  # eV per Hartree (idem)
BAR = 1e-4 / 160.21766208  # eV/Å³ per bar (1 eV/Å³ = 160.21766208 GPa)
GPA = 1.0 / 160.21766208  # eV/Å³ per GPa
