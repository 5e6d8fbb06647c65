"""The Textual dashboard: who reads the watched tables, ranked, and the operator's actions.

It sees an engine only through `core.view.EngineView`. Modules:

- `text`: the one place data becomes screen text (sanitised, bounded, never markup);
- `lines`, `detail`, `header`: what a snapshot looks like, as Text (pure functions);
- `readers`, `alertlist`, `panes`, `modals`, `keys`: the widgets (the alerts list with the
  alert texts), dialogs and key map;
- `operator`: snapshots pulled and operator actions sent, as workers;
- `app`: `DashboardApp`, the screen put together.
"""
