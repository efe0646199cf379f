"""CT series -> HU volume -> lung and lesion biomarkers, in process or on Triton.

Modules: ``volume`` (DICOM loading and validation, with ``headers``), ``biomarkers``
(threshold quantifier, with ``lungmask``), ``client`` (Triton HTTP client), ``exceptions``,
``phantom`` (synthetic chest volume with known volumes), ``cli`` (``ctriage quantify``).
The Triton model repository is ``inference/model_repository``.
"""
