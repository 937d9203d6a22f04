"""`actionrec serve`: a local web application over the same engine (see :mod:`actionrec.serve.app`)."""
