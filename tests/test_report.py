"""Run artefacts: parity plots coloured by config_type with MAE and RMSE in the legend."""

import torch


def test_parity_plot_groups_by_config_type(tmp_path, monkeypatch):
    import matplotlib.axes

    from mlpot.training.report import plot_parity

    labels = []
    real = matplotlib.axes.Axes.legend

    def spy(self, *a, **k):
        labels.append([t.get_label() for t in self.get_lines() if not t.get_label().startswith("_")])
        return real(self, *a, **k)

    monkeypatch.setattr(matplotlib.axes.Axes, "legend", spy)
    x = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    y = x + torch.tensor([0.1, -0.1, 0.3, 0.3], dtype=torch.float64)
    frame = torch.tensor([0, 0, 1, 2], dtype=torch.float64)  # frames 0 (bulk), 1 and 2 (surface)
    paths = plot_parity({"forces": torch.stack([x, y, frame], 1)}, tmp_path, groups=["bulk", "surface", "surface"])
    assert paths[0].is_file()
    assert labels[0] == ["bulk (2): MAE 0.1, RMSE 0.1", "surface (2): MAE 0.3, RMSE 0.3"]  # largest first, ties in order
    plot_parity({"forces": torch.stack([x, y, frame], 1)}, tmp_path)  # no groups: one series
    assert labels[1] == ["4 values: MAE 0.2, RMSE 0.224"]
