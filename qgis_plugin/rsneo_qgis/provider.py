"""The rsneo Processing provider: its algorithms and its setting."""

from qgis.core import QgsProcessingProvider

from .algorithms import ALGORITHMS
from .settings import DESCRIPTION


class RsneoProvider(QgsProcessingProvider):
    def id(self):
        return "rsneo"

    def name(self):
        return "rsneo"

    def longName(self):  # noqa: N802
        return "rsneo: native vision-language models for Earth observation"

    def load(self):
        try:
            from processing.core.ProcessingConfig import ProcessingConfig, Setting

            ProcessingConfig.settingIcons[self.name()] = self.icon()
            ProcessingConfig.addSetting(Setting(self.name(), "RSNEO_COMMAND", DESCRIPTION, ""))
            ProcessingConfig.readSettings()
        except ImportError:
            pass
        self.refreshAlgorithms()
        return True

    def loadAlgorithms(self):  # noqa: N802
        for algorithm in ALGORITHMS:
            self.addAlgorithm(algorithm())
