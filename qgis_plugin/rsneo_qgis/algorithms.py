"""The Processing algorithms: segment, change (and new buildings), learn, ask and info, each a run of the
rsneo command line on the project's layers (`runner.run_rsneo`), its outputs loaded back with their QML
styles."""

from __future__ import annotations

import tempfile
from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputFolder,
    QgsProcessingOutputRasterLayer,
    QgsProcessingOutputString,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorLayer,
    QgsVectorFileWriter,
)

from .runner import Cancelled, RsneoFailed, rsneo_command, run_rsneo
from .settings import command_setting

_STYLERS = []  # post-processors must outlive the algorithm run (QGIS holds them by pointer)


class Styler(QgsProcessingLayerPostProcessorInterface):
    """Applies a product's QML style to its layer once QGIS has loaded it."""

    def __init__(self, qml: str):
        super().__init__()
        self.qml = qml

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        if layer is not None and self.qml and Path(self.qml).is_file():
            layer.loadNamedStyle(self.qml)
            layer.triggerRepaint()


def _load(context: QgsProcessingContext, path: str, name: str, qml: str | None = None) -> None:
    details = QgsProcessingContext.LayerDetails(name, context.project(), name)
    if qml:
        styler = Styler(qml)
        _STYLERS.append(styler)
        details.setPostProcessor(styler)
    context.addLayerToLoadOnCompletion(path, details)


class RsneoAlgorithm(QgsProcessingAlgorithm):
    """Common to every rsneo algorithm: the command, its progress and cancellation, its errors."""

    name_ = ""
    title = ""
    help_text = ""

    def name(self):
        return self.name_

    def displayName(self):  # noqa: N802
        return self.title

    def group(self):
        return "rsneo"

    def groupId(self):  # noqa: N802
        return "rsneo"

    def shortHelpString(self):  # noqa: N802
        return self.help_text

    def createInstance(self):  # noqa: N802
        return type(self)()

    def flags(self):
        return super().flags() | QgsProcessingAlgorithm.FlagNoThreading

    def run_cli(self, args: list[str], feedback, out_dir: Path | None = None) -> dict:
        command = rsneo_command(command_setting())
        feedback.pushCommandInfo(" ".join([*command, *args, "--json"]))
        try:
            document = run_rsneo(
                command, args, out_dir=out_dir, on_progress=feedback.setProgress,
                on_message=feedback.pushInfo, is_cancelled=feedback.isCanceled,
            )  # fmt: skip
        except Cancelled as exc:
            feedback.reportError(str(exc))
            raise QgsProcessingException(str(exc)) from None
        except RsneoFailed as exc:
            raise QgsProcessingException(str(exc)) from None
        except OSError as exc:
            raise QgsProcessingException(
                f"cannot start rsneo ({exc}); set its command in Settings > Options > Processing > "
                "Providers > rsneo"
            ) from None
        for failure in document.get("failed", []):
            feedback.reportError(f"{failure['input']}: {failure['error']}")
        return document

    def raster_path(self, parameters, name, context) -> str:
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            raise QgsProcessingException(f"{name}: expected a raster layer")
        return layer.source()

    def common(self, parameters, context) -> list[str]:
        model = self.parameterAsFile(parameters, "MODEL", context)
        return ["--model", model] if model else []


def _model_parameter():
    return QgsProcessingParameterFile(
        "MODEL", "Model folder (empty: the bundled model)", behavior=QgsProcessingParameterFile.Folder,
        optional=True,
    )  # fmt: skip


class SegmentAlgorithm(RsneoAlgorithm):
    name_, title = "segment", "Segment (classes as words)"
    help_text = (
        "Open-vocabulary segmentation of a raster layer: a class map (COG with class names and colours), "
        "polygons with hectares, a QML style and a QGIS project in the output folder. Class names are words; "
        "names the model was not trained on are flagged (untrained) in the legend."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Raster layer"))
        self.addParameter(
            QgsProcessingParameterString("CLASSES", "Classes (comma-separated words)", "water, land")
        )
        self.addParameter(_model_parameter())
        self.addParameter(
            QgsProcessingParameterBoolean("STRICT", "Refuse untrained classes and imagery", False)
        )
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT", "Output folder"))
        self.addOutput(QgsProcessingOutputRasterLayer("CLASS_MAP", "Class map"))
        self.addOutput(QgsProcessingOutputVectorLayer("POLYGONS", "Class polygons"))
        self.addOutput(QgsProcessingOutputFolder("OUTPUT_FOLDER", "Output folder"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        out = Path(self.parameterAsString(parameters, "OUTPUT", context))
        args = ["segment", self.raster_path(parameters, "INPUT", context), "--classes",
                self.parameterAsString(parameters, "CLASSES", context), "--out", str(out),
                *self.common(parameters, context)]  # fmt: skip
        if self.parameterAsBool(parameters, "STRICT", context):
            args.append("--strict")
        document = self.run_cli(args, feedback, out)
        (item,) = document["items"]
        files = item["files"]
        for name, area in item["areas"].items():
            feedback.pushInfo(f"{item['labels'].get(name, name)}: {area:.4f} {item['area_unit']}")
        _load(context, files["class_map"], "rsneo classes", files["style"])
        _load(context, files["polygons"], "rsneo class polygons")
        return {"CLASS_MAP": files["class_map"], "POLYGONS": files["polygons"], "OUTPUT_FOLDER": str(out)}


class ChangeAlgorithm(RsneoAlgorithm):
    name_, title = "change", "Change between two dates"
    help_text = (
        "Change between two raster layers of one place (oldest first): a change map, polygons, a from-to "
        "table and an HTML report. Kind 'new buildings' maps only buildings that appeared, on RGB imagery "
        "of 2 m or finer (a building index, not the model)."
    )
    KINDS = ["any change", "new buildings"]

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("BEFORE", "Before (older date)"))
        self.addParameter(QgsProcessingParameterRasterLayer("AFTER", "After (later date)"))
        self.addParameter(QgsProcessingParameterEnum("KIND", "What to map", self.KINDS, defaultValue=0))
        self.addParameter(
            QgsProcessingParameterString("CLASSES", "From-to classes (optional)", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "PIXEL_SIZE", "Metres per pixel (images without georeference, new buildings)",
                QgsProcessingParameterNumber.Double, optional=True, minValue=0.01,
            )
        )  # fmt: skip
        self.addParameter(_model_parameter())
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT", "Output folder"))
        self.addOutput(QgsProcessingOutputRasterLayer("CHANGE_MAP", "Change map"))
        self.addOutput(QgsProcessingOutputVectorLayer("POLYGONS", "Change polygons"))
        self.addOutput(QgsProcessingOutputString("REPORT", "HTML report"))
        self.addOutput(QgsProcessingOutputFolder("OUTPUT_FOLDER", "Output folder"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        out = Path(self.parameterAsString(parameters, "OUTPUT", context))
        args = ["change", self.raster_path(parameters, "BEFORE", context),
                self.raster_path(parameters, "AFTER", context), "--out", str(out),
                *self.common(parameters, context)]  # fmt: skip
        if self.parameterAsEnum(parameters, "KIND", context) == 1:
            args += ["--of", "buildings"]
        classes = self.parameterAsString(parameters, "CLASSES", context)
        if classes.strip():
            args += ["--classes", classes]
        if parameters.get("PIXEL_SIZE") not in (None, ""):
            args += ["--pixel-size", str(self.parameterAsDouble(parameters, "PIXEL_SIZE", context))]
        document = self.run_cli(args, feedback, out)
        (item,) = document["items"]
        files = item["files"]
        feedback.pushInfo(item["summary"])
        _load(context, files["change_map"], "rsneo change", files["style"])
        _load(context, files["polygons"], "rsneo change polygons")
        return {"CHANGE_MAP": files["change_map"], "POLYGONS": files["polygons"], "REPORT": files["report"],
                "OUTPUT_FOLDER": str(out)}  # fmt: skip


class LearnAlgorithm(RsneoAlgorithm):
    name_, title = "learn", "Learn classes from polygons"
    help_text = (
        "Teach the model new classes from a polygon (or point) layer drawn on raster layers, one class per "
        "feature in a field. Writes a model folder for the Segment algorithm's Model folder. The hold-out "
        "score holds whole features out by spatial blocks, each scored by a head trained without it; "
        "'auto' chooses what the head reads on inner hold-outs of the training features."
    )
    FEATURES = ["auto", "all", "pixels"]  # rsneo learn --features

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterMultipleLayers("RASTERS", "Raster layers", QgsProcessing.TypeRaster)
        )
        self.addParameter(
            QgsProcessingParameterVectorLayer(
                "LABELS", "Labelled polygons or points",
                [QgsProcessing.TypeVectorPolygon, QgsProcessing.TypeVectorPoint],
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterField("FIELD", "Class field", parentLayerParameterName="LABELS")
        )
        self.addParameter(
            QgsProcessingParameterNumber("STEPS", "Training steps", defaultValue=300, minValue=1)
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "FOLDS", "Spatial folds of the hold-out score (0: no score)", defaultValue=4, minValue=0,
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterEnum("FEATURES", "What the head reads", self.FEATURES, defaultValue=0)
        )
        self.addParameter(_model_parameter())
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT", "Model folder to write"))
        self.addOutput(QgsProcessingOutputFolder("MODEL_FOLDER", "Model folder"))
        self.addOutput(QgsProcessingOutputString("SCORES", "Hold-out scores (JSON)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        import json

        out = Path(self.parameterAsString(parameters, "OUTPUT", context))
        rasters = [layer.source() for layer in self.parameterAsLayerList(parameters, "RASTERS", context)]
        labels = self.parameterAsVectorLayer(parameters, "LABELS", context)
        with tempfile.TemporaryDirectory(prefix="rsneo-labels-") as scratch:
            field = self.parameterAsString(parameters, "FIELD", context)
            steps = str(self.parameterAsInt(parameters, "STEPS", context))
            labels_file = _vector_file(labels, Path(scratch))
            folds = str(self.parameterAsInt(parameters, "FOLDS", context))
            features = self.FEATURES[self.parameterAsEnum(parameters, "FEATURES", context)]
            args = ["learn", *rasters, "--labels", labels_file, "--class-field", field, "--out", str(out),
                    "--steps", steps, "--folds", folds, "--features", features,
                    *self.common(parameters, context)]  # fmt: skip
            document = self.run_cli(args, feedback, out)
        feedback.pushInfo(f"mean IoU {document['mean_iou']}, mean F1 {document['mean_f1']}")
        return {"MODEL_FOLDER": document["model"], "SCORES": json.dumps(document["scores"])}


def _vector_file(layer, scratch: Path) -> str:
    """A file the CLI reads for `layer`: its own file when it is one whole file, else a GeoPackage copy."""
    source = layer.source()
    if "|" not in source and Path(source).is_file():
        return source
    path = scratch / "labels.gpkg"
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    error = QgsVectorFileWriter.writeAsVectorFormatV2(layer, str(path), layer.transformContext(), options)
    if error[0] != QgsVectorFileWriter.NoError:
        raise QgsProcessingException(f"cannot write the labels layer for rsneo: {error}")
    return str(path)


class AskAlgorithm(RsneoAlgorithm):
    name_, title = "ask", "Ask a question"
    help_text = (
        "A question about a raster layer, or one question over several dates of one place (oldest first)."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterMultipleLayers(
                "RASTERS", "Raster layer(s), oldest first", QgsProcessing.TypeRaster
            )
        )
        self.addParameter(
            QgsProcessingParameterString("QUESTION", "Question", "How much of the image is water?")
        )
        self.addParameter(_model_parameter())
        self.addOutput(QgsProcessingOutputString("ANSWER", "Answer"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        rasters = [layer.source() for layer in self.parameterAsLayerList(parameters, "RASTERS", context)]
        question = self.parameterAsString(parameters, "QUESTION", context)
        document = self.run_cli(["ask", *rasters, question, *self.common(parameters, context)], feedback)
        (item,) = document["items"]
        feedback.pushInfo(item["answer"])
        return {"ANSWER": item["answer"]}


class InfoAlgorithm(RsneoAlgorithm):
    name_, title = "info", "Describe a raster"
    help_text = "What rsneo reads in a raster layer: sensor, bands, wavelengths, CRS, resolution, statistics."

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Raster layer"))
        self.addOutput(QgsProcessingOutputString("INFO", "Description (JSON)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        import json

        document = self.run_cli(["info", self.raster_path(parameters, "INPUT", context)], feedback)
        (raster,) = document["rasters"]
        feedback.pushInfo(f"{raster['sensor']}: {', '.join(b['name'] for b in raster['bands'])}")
        return {"INFO": json.dumps(raster)}


ALGORITHMS = (SegmentAlgorithm, ChangeAlgorithm, LearnAlgorithm, AskAlgorithm, InfoAlgorithm)
