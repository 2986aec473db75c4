"""``python -m calamp.evaluate SAMPLES --truth TRUTH --n-train N [...]`` (= ``calamp evaluate``)."""

from calamp.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m calamp.evaluate"))
