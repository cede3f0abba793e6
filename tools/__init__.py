"""Development tools kept out of the serving packages: the bundled avatar's generator
(`avatar_build`) and the retargeting fidelity measure (`fidelity`), used by bench, tests and the
asset build. Nothing under server/ or engines/ imports this package."""
