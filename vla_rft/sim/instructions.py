"""What a person would tell the robot to do, for each Meta-World v3 task.

Meta-World names its tasks ("drawer-open-v3") but gives no instructions; a VLA policy is
conditioned on language, so every simulated episode carries one of these sentences. They are
short lower-case imperatives, like LIBERO's. This module needs neither MuJoCo nor Meta-World.
"""

from __future__ import annotations

import difflib

TASK_INSTRUCTIONS: dict[str, str] = {
    # The ten MT10 tasks
    "reach-v3": "move the gripper to the target",
    "push-v3": "push the puck to the target",
    "pick-place-v3": "pick up the puck and place it at the target",
    "door-open-v3": "open the door",
    "drawer-open-v3": "open the drawer",
    "drawer-close-v3": "push the drawer closed",
    "button-press-topdown-v3": "press the button from the top",
    "peg-insert-side-v3": "insert the peg into the hole from the side",
    "window-open-v3": "slide the window open",
    "window-close-v3": "slide the window closed",
    # The other forty Meta-World v3 tasks
    "assembly-v3": "put the ring onto the peg",
    "basketball-v3": "dunk the ball into the basket",
    "bin-picking-v3": "move the cube into the other bin",
    "box-close-v3": "put the lid on the box",
    "button-press-topdown-wall-v3": "press the button from the top, reaching over the wall",
    "button-press-v3": "press the button",
    "button-press-wall-v3": "press the button, reaching around the wall",
    "coffee-button-v3": "press the button on the coffee machine",
    "coffee-pull-v3": "pull the mug away from the coffee machine",
    "coffee-push-v3": "push the mug under the coffee machine",
    "dial-turn-v3": "turn the dial",
    "disassemble-v3": "take the ring off the peg",
    "door-close-v3": "close the door",
    "door-lock-v3": "lock the door",
    "door-unlock-v3": "unlock the door",
    "faucet-close-v3": "turn the faucet off",
    "faucet-open-v3": "turn the faucet on",
    "hammer-v3": "hammer the nail into the wall",
    "hand-insert-v3": "put the gripper into the hole",
    "handle-press-side-v3": "press the handle down from the side",
    "handle-press-v3": "press the handle down",
    "handle-pull-side-v3": "pull the handle up from the side",
    "handle-pull-v3": "pull the handle up",
    "lever-pull-v3": "pull the lever up",
    "peg-unplug-side-v3": "unplug the peg from the side",
    "pick-out-of-hole-v3": "pick the cube out of the hole",
    "pick-place-wall-v3": "pick up the puck and place it at the target behind the wall",
    "plate-slide-back-side-v3": "slide the plate back sideways into the goal",
    "plate-slide-back-v3": "slide the plate back into the goal",
    "plate-slide-side-v3": "slide the plate sideways into the goal",
    "plate-slide-v3": "slide the plate into the goal",
    "push-back-v3": "pull the puck back to the target",
    "push-wall-v3": "push the puck around the wall to the target",
    "reach-wall-v3": "move the gripper over the wall to the target",
    "shelf-place-v3": "put the block on the shelf",
    "soccer-v3": "kick the ball into the goal",
    "stick-pull-v3": "use the stick to pull the container",
    "stick-push-v3": "use the stick to push the container",
    "sweep-into-v3": "sweep the puck into the hole",
    "sweep-v3": "sweep the puck off the table",
}
"""Meta-World v3 task name -> natural-language instruction (all 50 tasks)."""


def unknown_task(task: str) -> str:
    """Why `task` is refused, with the closest known names (a typo gets a suggestion)."""
    close = difflib.get_close_matches(task, TASK_INSTRUCTIONS, n=3, cutoff=0.6)
    if close:
        return f"unknown Meta-World task {task!r}; did you mean {' or '.join(close)}?"
    return f"unknown Meta-World task {task!r}; known tasks: {', '.join(sorted(TASK_INSTRUCTIONS))}"


def instruction_for(task: str) -> str:
    """The instruction for a Meta-World v3 task; ValueError naming the closest tasks otherwise."""
    try:
        return TASK_INSTRUCTIONS[task]
    except KeyError:
        raise ValueError(unknown_task(task)) from None
