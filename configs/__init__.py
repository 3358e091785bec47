"""The configs that ship with mtrl: installed as the package data `mtrl_configs` (`mtrl configs`
lists them; `mtrl train NAME` resolves one by name)."""
