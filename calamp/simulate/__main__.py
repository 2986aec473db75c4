"""``python -m calamp.simulate --n N --out file.root [options]`` (= ``calamp simulate``)."""

from calamp.simulate import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m calamp.simulate"))
