"""Results back to the PACS: a DICOM Segmentation (lung, lesion) and a TID 1500 measurement SR.

Built with highdicom from the headers of the quantified series (in volume order, or the one
multi-frame image), the boolean masks and the biomarkers. Anatomy and findings are SNOMED CT
codes, units UCUM. The lesion percentages have no standard code: they carry local codes (coding
scheme ``99CTRIAGE``, the ``99`` prefix that DICOM reserves for private schemes), defined once
below.

The objects reference the source images by their UIDs as received, conformant or not (the PACS
knows them by those); their own UIDs are new, conformant ones. A source series without a Frame
of Reference UID gets one derived for the results (the SEG needs one). Warnings that pydicom and
highdicom raise on the way (non-conformant source values) are logged at debug level, not shown.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from inference.exceptions import InvalidVolume
from inference.frames import is_multiframe, number_of_frames, stack_order
from inference.headers import quiet_pydicom, raw_text, read_dicom
from inference.volume import CtVolume

logger = logging.getLogger(__name__)

MANUFACTURER = "ctriage"
LOCAL_SCHEME = "99CTRIAGE"
SEG_SERIES_NUMBER = 901
SR_SERIES_NUMBER = 902

LUNG = hd.sr.CodedConcept("39607008", "SCT", "Lung")
LESION = hd.sr.CodedConcept("52988006", "SCT", "Lesion")
ANATOMICAL_STRUCTURE = hd.sr.CodedConcept("123037004", "SCT", "Anatomical Structure")
ALTERED_STRUCTURE = hd.sr.CodedConcept("49755003", "SCT", "Morphologically Altered Structure")
VOLUME = hd.sr.CodedConcept("118565006", "SCT", "Volume")
CT_CHEST = hd.sr.CodedConcept("24627-2", "LN", "CT Chest")
ML = hd.sr.CodedConcept("mL", "UCUM", "milliliter")
PERCENT = hd.sr.CodedConcept("%", "UCUM", "percent")
#: biomarker name -> local code of "percent of lung volume" measures
PERCENT_CODES = {
    "lesion_percent": hd.sr.CodedConcept("LESION-PCT", LOCAL_SCHEME, "Lesion percent of lung"),
    "ggo_percent": hd.sr.CodedConcept("GGO-PCT", LOCAL_SCHEME, "Ground-glass percent of lung"),
    "consolidation_percent": hd.sr.CodedConcept(
        "CONS-PCT", LOCAL_SCHEME, "Consolidation percent of lung"
    ),
    "well_aerated_percent": hd.sr.CodedConcept(
        "AERATED-PCT", LOCAL_SCHEME, "Well-aerated percent of lung"
    ),
}


#: The RSNA consensus category (:mod:`inference.rsna`) as a qualitative evaluation of the lesion:
#: no standard code exists for it or its values, so local codes.
RSNA_CATEGORY = hd.sr.CodedConcept("RSNA-CAT", LOCAL_SCHEME, "RSNA COVID-19 CT category")
RSNA_VALUES = {
    name: hd.sr.CodedConcept(
        f"RSNA-{name.upper()}", LOCAL_SCHEME, f"{name.capitalize()} appearance"
    )
    for name in ("typical", "indeterminate", "atypical", "negative")
}
NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
#: (category, deciding findings) as ``inference.rsna.RsnaAssessment`` / the records carry them
RsnaSummary = tuple[str, Mapping[str, float]]


#: Short local codes (SH: 16 characters at most) of the findings that decide the category.
RSNA_FINDING_CODES = {
    "lesion_percent": "RSNA-F-LES-PCT",
    "max_zone_percent": "RSNA-F-MAXZONE",
    "ggo_share_percent": "RSNA-F-GGO-SHARE",
    "distribution_measured": "RSNA-F-DIST-MEAS",
    "bilateral": "RSNA-F-BILAT",
    "peripheral_predominant": "RSNA-F-PERIPH",
    "peripheral_lesion_percent": "RSNA-F-PERIPH-PC",
    "multifocal": "RSNA-F-MULTIFOC",
    "lesion_count": "RSNA-F-COUNT",
    "lower_zone_predominant": "RSNA-F-LOWER",
    "involved_zones": "RSNA-F-ZONES",
}


def rsna_finding_code(name: str) -> hd.sr.CodedConcept:
    """Local code of one deciding finding of the RSNA category (``RSNA_FINDING_CODES``)."""
    return hd.sr.CodedConcept(RSNA_FINDING_CODES[name], LOCAL_SCHEME, name.replace("_", " "))


#: The comparison with the patient's prior CT (issue 16); no standard codes, so local ones.
PRIOR_STUDY_DATE = hd.sr.CodedConcept("PRIOR-STUDY-DATE", LOCAL_SCHEME, "Prior study date")
PRIOR_STUDY_UID = hd.sr.CodedConcept("PRIOR-STUDY-UID", LOCAL_SCHEME, "Prior study")
PRIOR_LESION_PERCENT = hd.sr.CodedConcept(
    "PRIOR-LESION-PCT", LOCAL_SCHEME, "Lesion percent of lung on the prior study"
)
LESION_CHANGE = hd.sr.CodedConcept(
    "LESION-PCT-CHG", LOCAL_SCHEME, "Lesion percent change since the prior study"
)
SEVERITY_CHANGE = hd.sr.CodedConcept(
    "CTSS-CHG", LOCAL_SCHEME, "CT severity score change since the prior study"
)
PRIOR_INTERVAL = hd.sr.CodedConcept("PRIOR-INTERVAL", LOCAL_SCHEME, "Interval since prior study")
DAYS = hd.sr.CodedConcept("d", "UCUM", "day")


@dataclass(frozen=True)
class PriorComparison:
    """The comparison with the patient's prior CT: when, its lesion %, and the change since."""

    study_uid: str
    study_date: date
    lesion_percent: float
    lesion_points: float  # percentage points of lung, this study minus the prior
    interval_days: float
    severity_points: float | None = None


@dataclass(frozen=True)
class ResultObjects:
    """The two objects to store in the study."""

    segmentation: hd.seg.Segmentation
    report: hd.sr.Comprehensive3DSR


#: Type 2 attributes (present, possibly empty) that the result objects copy from the source
#: images; scanners fill them, a minimal or anonymised source may lack them.
_COPIED_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
)


def source_headers(files: Sequence[Path]) -> list[Dataset]:
    """Headers (no pixels) of the quantified slices, in volume order, type 2 fields present."""
    headers: list[Dataset] = []
    with quiet_pydicom():
        for file in files:
            ds = read_dicom(file, stop_before_pixels=True)
            for keyword in _COPIED_TYPE2:
                if keyword not in ds:
                    setattr(ds, keyword, "")
            headers.append(ds)
    return headers


def build_results(
    sources: Sequence[Dataset],
    lung: np.ndarray,
    lesion: np.ndarray,
    biomarkers: dict[str, float],
    algorithm: str,
    algorithm_version: str,
    uid_seed: str | None = None,
    rsna: RsnaSummary | None = None,
    prior: PriorComparison | None = None,
) -> ResultObjects:
    """Segmentation of ``lung`` and ``lesion`` (z, y, x booleans over ``sources``) and the SR.

    With ``uid_seed`` every UID is derived from it, so storing the results of the same study and
    algorithm version twice (an at-least-once redelivery) replaces them instead of adding copies.
    ``rsna`` (category, deciding findings) adds the coded RSNA consensus category to the
    lesion's measurements group; ``prior`` adds the comparison with the patient's prior CT (its
    lesion %, the change and the interval as measurements of the lesion group, its date and
    Study Instance UID in the report). Raises ``InvalidVolume`` when the masks do not fit the
    sources or highdicom refuses them.
    """
    uid = _uids(uid_seed)
    slices = sum(number_of_frames(ds) for ds in sources)
    if lung.shape != lesion.shape or lung.shape[0] != slices:
        raise InvalidVolume(
            f"masks {lung.shape}/{lesion.shape} do not match the {slices} slices of "
            f"{len(sources)} source images"
        )
    sources = _with_frame_of_reference(sources)
    pixels = np.stack([lung, lesion], axis=-1).astype(np.uint8)
    if len(sources) == 1 and is_multiframe(sources[0]):
        in_frame_order = np.empty_like(pixels)
        in_frame_order[stack_order(sources[0])] = pixels  # slice k is frame stack_order[k]
        pixels = in_frame_order
    try:
        with quiet_pydicom():
            return _build(
                sources, pixels, biomarkers, (algorithm, algorithm_version), uid, (rsna, prior)
            )
    # highdicom validates its inputs with ValueError / TypeError / AttributeError
    except (ValueError, TypeError, AttributeError, KeyError) as e:
        raise InvalidVolume(f"cannot build the SEG/SR of these sources: {e}") from e


def _with_frame_of_reference(sources: Sequence[Dataset]) -> Sequence[Dataset]:
    """The sources, copied with a derived Frame of Reference UID when some lack one."""
    if all(raw_text(ds, "FrameOfReferenceUID") for ds in sources):
        return sources
    # from the series, not the run: every result of one series shares one frame of reference
    series = raw_text(sources[0], "SeriesInstanceUID")
    derived = generate_uid(entropy_srcs=["ctriage frame of reference", series])
    logger.info("source series has no Frame of Reference UID; the results use %s", derived)
    copies = [copy.deepcopy(ds) for ds in sources]
    for ds in copies:
        ds.FrameOfReferenceUID = derived
    return copies


def _build(
    sources: Sequence[Dataset],
    pixels: np.ndarray,
    biomarkers: dict[str, float],
    algorithm_and_version: tuple[str, str],
    uid: Callable[[str], hd.UID],
    context: tuple[RsnaSummary | None, PriorComparison | None],
) -> ResultObjects:
    algorithm, algorithm_version = algorithm_and_version
    algorithm_id = hd.AlgorithmIdentificationSequence(
        name=algorithm, version=algorithm_version, family=codes.cid7162.ArtificialIntelligence
    )
    segments = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label,
            segmented_property_category=category,
            segmented_property_type=kind,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm_id,
        )
        for number, label, category, kind in (
            (1, "Lung", ANATOMICAL_STRUCTURE, LUNG),
            (2, "Lesion", ALTERED_STRUCTURE, LESION),
        )
    ]
    segmentation = hd.seg.Segmentation(
        source_images=list(sources),
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments,
        series_instance_uid=uid("seg-series"),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=uid("seg-instance"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=algorithm,
        software_versions=algorithm_version,
        device_serial_number="0",
        series_description="ctriage lung and lesion masks",
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    report = _report(sources, segmentation, biomarkers, algorithm_and_version, uid, context)
    return ResultObjects(segmentation=segmentation, report=report)


def _report(
    sources: Sequence[Dataset],
    segmentation: hd.seg.Segmentation,
    biomarkers: dict[str, float],
    algorithm_and_version: tuple[str, str],
    uid: Callable[[str], hd.UID],
    context: tuple[RsnaSummary | None, PriorComparison | None],
) -> hd.sr.Comprehensive3DSR:
    rsna, prior = context
    algorithm, algorithm_version = algorithm_and_version
    algorithm_id = hd.sr.AlgorithmIdentification(name=algorithm, version=algorithm_version)
    source_series = hd.sr.SourceSeriesForSegmentation(str(sources[0].SeriesInstanceUID))

    def group(  # noqa: ANN202
        number: int,
        finding: hd.sr.CodedConcept,
        measures: list[hd.sr.Measurement],
        evaluations: list[hd.sr.QualitativeEvaluation] | None = None,
    ):
        return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=uid(f"tracking-{number}"), identifier=f"{finding.meaning} (segment {number})"
            ),
            referenced_segment=hd.sr.ReferencedSegment(
                sop_class_uid=segmentation.SOPClassUID,
                sop_instance_uid=segmentation.SOPInstanceUID,
                segment_number=number,
                source_series=source_series,
            ),
            finding_type=finding,
            algorithm_id=algorithm_id,
            measurements=measures,
            qualitative_evaluations=evaluations,
        )

    def measure(name: hd.sr.CodedConcept, value: float, unit: hd.sr.CodedConcept):  # noqa: ANN202
        return hd.sr.Measurement(
            name=name, value=float(value), unit=unit, algorithm_id=algorithm_id
        )

    lung = [measure(VOLUME, biomarkers["lung_volume_ml"], ML)]
    lesion = [measure(VOLUME, biomarkers["lesion_volume_ml"], ML)] + [
        measure(code, biomarkers[name], PERCENT) for name, code in PERCENT_CODES.items()
    ]
    evaluations = None
    if rsna is not None:
        category, deciding = rsna
        evaluations = [hd.sr.QualitativeEvaluation(RSNA_CATEGORY, RSNA_VALUES[category])]
        lesion += [
            measure(rsna_finding_code(n), v, PERCENT if n.endswith("percent") else NO_UNITS)
            for n, v in deciding.items()
        ]
    if prior is not None:
        lesion += [
            measure(PRIOR_LESION_PERCENT, prior.lesion_percent, PERCENT),
            measure(LESION_CHANGE, prior.lesion_points, PERCENT),
            measure(PRIOR_INTERVAL, prior.interval_days, DAYS),
        ]
        if prior.severity_points is not None:
            lesion.append(measure(SEVERITY_CHANGE, prior.severity_points, NO_UNITS))
    observation = hd.sr.ObservationContext(
        observer_person_context=None,
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=uid("device"), name=algorithm, manufacturer_name=MANUFACTURER
            ),
        ),
    )
    content = hd.sr.MeasurementReport(
        observation_context=observation,
        procedure_reported=CT_CHEST,
        imaging_measurements=[group(1, LUNG, lung), group(2, LESION, lesion, evaluations)],
        title=codes.cid7021.ImagingMeasurementReport,
    )
    root = content[0]
    if prior is not None:  # which study the change is measured against
        root.ContentSequence.extend(
            [
                hd.sr.DateContentItem(
                    name=PRIOR_STUDY_DATE,
                    value=prior.study_date,
                    relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
                ),
                hd.sr.UIDRefContentItem(
                    name=PRIOR_STUDY_UID,
                    value=prior.study_uid,
                    relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
                ),
            ]
        )
    return hd.sr.Comprehensive3DSR(
        evidence=[*sources, segmentation],
        content=root,
        series_instance_uid=uid("sr-series"),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=uid("sr-instance"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        series_description="ctriage lung lesion measurements",
        is_complete=True,
    )


def _uids(seed: str | None) -> Callable[[str], hd.UID]:
    """UID factory: random UIDs, or UIDs derived from ``seed`` and the object's role."""

    def uid(role: str) -> hd.UID:
        if seed is None:
            return hd.UID()
        return hd.UID(generate_uid(entropy_srcs=[seed, role]))

    return uid


def results_for_volume(
    volume: CtVolume,
    masks: tuple[np.ndarray, np.ndarray],
    biomarkers: dict[str, float],
    algorithm: str,
    algorithm_version: str,
    rsna: RsnaSummary | None = None,
    prior: PriorComparison | None = None,
) -> list[Dataset]:
    """SEG of ``masks`` (lung, lesion) + SR of a quantified volume (deterministic UIDs)."""
    lung, lesion = masks
    results = build_results(
        source_headers(volume.source_files),
        lung,
        lesion,
        biomarkers,
        algorithm,
        algorithm_version,
        uid_seed=f"{volume.series_uid}/{algorithm}/{algorithm_version}",
        rsna=rsna,
        prior=prior,
    )
    return [results.segmentation, results.report]
